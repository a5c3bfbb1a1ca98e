"""LLM + database QA: per-project connections, the sqlglot guard, read-only execution.

tables.py / schemas.py   sql_databases (migration 0009): encrypted URL, allow-list, row filters
secrets.py               Fernet encryption of stored URLs (STRATUM_SECRET_KEY or a key file)
guard.py                 one read-only SELECT over allowed tables/columns, row filters rewritten in
executor.py              read-only execution with a row limit and a timeout; schema for the prompt
qa.py                    the prompt, SQL extracted from the reply, the cited answer
service.py               DatabaseService
"""
