"""WSGI entry point for gunicorn: `gunicorn -c engine/gunicorn.conf.py engine.wsgi:app`.

The app is configured from the environment (`EngineConfig.from_env`), and
`engine.app:create_app()` works as an entry point just as well.
"""

from engine.app import create_app

app = create_app()
