from pathlib import Path

import pytest

from sluicegate.settings import (
    BUILTIN_FAKE,
    ConfigError,
    Secret,
    embedded_defaults,
    load_settings,
    settings_from_mapping,
)

MINIMAL_MODEL = {
    "model_name": "claude-sonnet-4-6",
    "provider": "anthropic",
    "api_base": "https://api.anthropic.com",
}


def test_issue_example_keys_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICEGATE_ADMIN_TOKEN", "admin-canary-123")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-canary-456")
    config = tmp_path / "c.yaml"
    config.write_text(
        "database_url: sqlite:///./data/sluicegate.db\n"
        "admin_token: os.environ/SLUICEGATE_ADMIN_TOKEN\n"
        "model_list:\n"
        "  - model_name: claude-sonnet-4-6\n"
        "    provider: anthropic\n"
        "    model: claude-sonnet-4-6\n"
        "    api_base: https://api.anthropic.com/\n"
        "    api_key: os.environ/ANTHROPIC_API_KEY\n"
    )
    settings = load_settings(config)
    entry = settings.model_list[0]
    assert entry.api_key is not None and entry.api_key.reveal() == "sk-ant-canary-456"
    assert entry.api_base == "https://api.anthropic.com"  # trailing slash dropped
    assert settings.admin_token is not None
    dumped = str(settings.redacted()) + repr(settings)
    assert "canary" not in dumped


def test_unknown_key_names_its_path() -> None:
    with pytest.raises(ConfigError, match=r"server\.max_body_sizee: unknown key"):
        settings_from_mapping({"server": {"max_body_sizee": 1}})
    with pytest.raises(ConfigError, match=r"model_list\[0\]\.apikey: unknown key"):
        settings_from_mapping({"model_list": [{**MINIMAL_MODEL, "apikey": "x"}]})


def test_missing_env_var_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_KEY_MISSING", raising=False)
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(
            {"model_list": [{**MINIMAL_MODEL, "api_key": "os.environ/ANTHROPIC_KEY_MISSING"}]}
        )
    assert "model_list[0].api_key: environment variable ANTHROPIC_KEY_MISSING is not set" in str(
        info.value
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(1024, 1024), ("32MiB", 32 * 1024 * 1024), ("10 MB", 10_000_000), ("512kib", 512 * 1024)],
)
def test_body_size_units(raw: object, expected: int) -> None:
    assert (
        settings_from_mapping({"server": {"max_body_size": raw}}).server.max_body_size == expected
    )


def test_body_size_default_is_32_mib() -> None:
    assert settings_from_mapping({}).server.max_body_size == 32 * 1024 * 1024


@pytest.mark.parametrize(
    "bad",
    [
        {"server": {"max_body_size": "lots"}},
        {"database_url": "mysql://x"},
        {"model_list": [{**MINIMAL_MODEL, "provider": "cohere"}]},
        {"model_list": [{**MINIMAL_MODEL, "api_base": "ftp://host"}]},
        {"model_list": [{**MINIMAL_MODEL, "api_base": "https://h/x?y=1"}]},
        {"model_list": [{**MINIMAL_MODEL, "deployment_id": "a"}] * 2},
        {"model_list": [MINIMAL_MODEL], "routing": {"fallbacks": {"claude-sonnet-4-6": ["x"]}}},
        {
            "model_list": [MINIMAL_MODEL],
            "routing": {"fallbacks": {"claude-sonnet-4-6": ["claude-sonnet-4-6"]}},
        },
        {"model_list": [MINIMAL_MODEL], "routing": {"strategy": "random"}},
        {"model_list": [{**MINIMAL_MODEL, "weight": -1}]},
        {"timeouts": {"connect": -1}},
    ],
)
def test_invalid_values_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        settings_from_mapping(bad)


def test_api_base_may_carry_a_path_prefix() -> None:
    entry = settings_from_mapping(
        {"model_list": [{**MINIMAL_MODEL, "api_base": "https://proxy.internal/anthropic/"}]}
    ).model_list[0]
    assert entry.api_base == "https://proxy.internal/anthropic"


def test_per_model_timeouts_override_defaults() -> None:
    settings = settings_from_mapping(
        {"timeouts": {"idle": 30}, "model_list": [{**MINIMAL_MODEL, "timeouts": {"first_byte": 5}}]}
    )
    merged = settings.model_list[0].timeouts.over(settings.timeouts)
    assert (merged.first_byte, merged.idle, merged.connect) == (5, 30, 10)


def test_yaml_errors_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.yaml")


def test_embedded_defaults_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("SLUICEGATE_DATA_DIR", str(tmp_path))
    settings = embedded_defaults()
    assert settings.database_url == f"sqlite:///{tmp_path}/sluicegate.db"
    assert {m.model_name for m in settings.model_list} == {"demo", "claude-*"}
    assert all(m.api_base == BUILTIN_FAKE for m in settings.model_list)
    assert settings.migrate_on_start


def test_embedded_defaults_route_claude_to_anthropic_with_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-real")
    claude = next(m for m in embedded_defaults().model_list if m.model_name == "claude-*")
    assert claude.api_base == "https://api.anthropic.com"
    assert claude.api_key == Secret("sk-ant-real")


def test_postgres_does_not_migrate_on_start_by_default() -> None:
    assert not settings_from_mapping({"database_url": "postgresql://h/db"}).migrate_on_start
    assert settings_from_mapping(
        {"database_url": "postgresql://h/db", "auto_migrate": True}
    ).migrate_on_start


def test_database_url_from_env_and_password_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_URL_CANARY", "postgresql://app:pw-canary-789@db:5432/gw")
    settings = settings_from_mapping({"database_url": "os.environ/DB_URL_CANARY"})
    assert settings.database_url == "postgresql://app:pw-canary-789@db:5432/gw"
    assert settings.redacted()["database_url"] == "postgresql://app:***@db:5432/gw"


def test_lenient_mode_tolerates_unset_provider_keys_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNSET_PROVIDER_KEY", raising=False)
    monkeypatch.delenv("UNSET_PEPPER", raising=False)
    data = {"model_list": [{**MINIMAL_MODEL, "api_key": "os.environ/UNSET_PROVIDER_KEY"}]}
    settings = settings_from_mapping(data, lenient=True)
    assert settings.model_list[0].api_key is not None
    assert settings.model_list[0].api_key.reveal() == ""
    with pytest.raises(ConfigError, match="UNSET_PROVIDER_KEY"):
        settings_from_mapping(data)
    with pytest.raises(ConfigError, match=r"key_hash_secret: environment variable UNSET_PEPPER"):
        settings_from_mapping({"key_hash_secret": "os.environ/UNSET_PEPPER"}, lenient=True)


def test_the_annotated_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "SLUICEGATE_ADMIN_TOKEN",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_API_KEY_B",
        "OPENAI_API_KEY",
    ):
        monkeypatch.setenv(name, f"{name.lower()}-value")
    example = Path(__file__).resolve().parents[2] / "examples" / "sluicegate.yaml"
    settings = load_settings(example)
    names = [m.model_name for m in settings.model_list]
    assert names == [
        "claude-sonnet-4-6",
        "sonnet",
        "sonnet",
        "fast",
        "claude-*",
        "gpt-4o-mini",
        "llama-local",
        "demo",
    ]
    assert settings.deployment_ids()[1:3] == ["sonnet-a", "sonnet-b"]
    assert settings.routing.fallbacks == {"sonnet": ["gpt-4o-mini"]}
    local = settings.model_list[6]
    assert (local.provider, local.auth_style, local.stream_options) == ("openai", "none", False)


def test_several_entries_of_one_name_are_deployments_with_their_own_ids() -> None:
    settings = settings_from_mapping(
        {
            "model_list": [
                MINIMAL_MODEL,
                {**MINIMAL_MODEL, "weight": 3},
                {**MINIMAL_MODEL, "deployment_id": "eu"},
                {**MINIMAL_MODEL, "model_name": "other"},
            ]
        }
    )
    name = MINIMAL_MODEL["model_name"]
    assert settings.deployment_ids() == [f"{name}#1", f"{name}#2", "eu", "other"]


def test_metrics_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"metrics\.port"):
        settings_from_mapping({"server": {"port": 9000}, "metrics": {"port": 9000}})
    with pytest.raises(ConfigError, match=r"metrics\.auth"):
        settings_from_mapping({"metrics": {"auth": "admin_token"}})
    assert settings_from_mapping({"metrics": {"port": 9464}}).metrics.port == 9464
