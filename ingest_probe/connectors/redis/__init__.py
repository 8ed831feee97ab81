"""The Redis connector (redis-py's asyncio client)."""
