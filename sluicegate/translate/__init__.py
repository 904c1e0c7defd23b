"""Pure translation between the Anthropic Messages and OpenAI Chat Completions wire formats.

Nothing here imports the rest of the gateway or does I/O: functions take and return plain
JSON-shaped dicts (and encoded SSE bytes for streams), so every case is a golden fixture.

Directions (module per concern):

* OpenAI client -> Anthropic upstream: ``o2a_request`` (request), ``a2o_response``
  (response), ``stream_a2o`` (Anthropic SSE events -> OpenAI chunks).
* Anthropic client -> OpenAI upstream: ``a2o_request``, ``o2a_response``, ``stream_o2a``
  (OpenAI chunks -> Anthropic SSE events).
* ``errors``: error bodies across the two shapes; :class:`TranslationError` for requests
  that cannot be translated faithfully (rendered as a 400 naming the field).
"""
