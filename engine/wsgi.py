"""WSGI entry point for gunicorn: `gunicorn -c engine/gunicorn.conf.py engine.wsgi:app`.

The app is configured from the environment (`EngineConfig.from_env`).
"""

from engine.app import create_app

app = create_app()
