"""The client of Segmind's hosted API: ``Client`` and ``AsyncClient`` (v1 chat, v2 submit and poll,
credits), the shapes they send and return, retries, rate limits, key redaction, ``Conversation``.

Layer: request -> **client** -> runner -> store -> tables/plots/widgets. It may import only
``llamakit.errors``, ``llamakit._defaults`` and ``llamakit.tokens``; never the server, the store or
experiments (``tests/test_architecture.py`` checks every layer's imports).
"""
