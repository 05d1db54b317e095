"""The client of the hosted API (sync and async) and its parts."""
