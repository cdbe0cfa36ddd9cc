"""The hostile-input gate (issue 14): generated hostile requests against a live gunicorn server, run by
.ci/hostile.sh on SQLite and on PostgreSQL + Redis. Not part of `make test`: see hostile/conftest.py."""
