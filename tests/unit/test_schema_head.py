from pathlib import Path

import pytest

from sluicegate.store.migrate import head_revision, upgrade
from sluicegate.store.migrations import HEAD_REVISION
from sluicegate.store.startup import SchemaOutOfDate, ensure_schema, recorded_revision


def test_head_constant_matches_alembic() -> None:
    assert head_revision() == HEAD_REVISION


async def test_ensure_schema_migrates_or_refuses(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    assert await recorded_revision(url) is None
    with pytest.raises(SchemaOutOfDate, match="sluicegate db upgrade"):
        await ensure_schema(url, auto_migrate=False)
    await ensure_schema(url, auto_migrate=True)
    assert await recorded_revision(url) == HEAD_REVISION
    await ensure_schema(url, auto_migrate=False)  # at head: fine without migrating
    await upgrade(url)  # idempotent
