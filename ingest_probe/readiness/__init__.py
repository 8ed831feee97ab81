"""The failover drill: the ingest results file, the dimension vocabulary and the judgement."""
