"""The TimescaleDB/PostgreSQL connector (asyncpg), with its SQLite rehearsal backend."""
