"""A scriptable fake LLM provider speaking the Anthropic Messages and OpenAI Chat wire formats.

Used by tests (in process, in a thread, or as a subprocess driven through ``/_fake/``), by the
quickstart as a demo model, and by ``sluicegate fake-upstream --port P``.
"""

from sluicegate.fake_upstream.behaviour import Behaviour
from sluicegate.fake_upstream.server import FakeUpstream, run_fake_upstream
from sluicegate.fake_upstream.state import RecordedCall

__all__ = ["Behaviour", "FakeUpstream", "RecordedCall", "run_fake_upstream"]
