"""WSGI entry point for gunicorn: `gunicorn -c engine/gunicorn.conf.py engine.wsgi:app`.

The app is configured from the environment (`EngineConfig.from_env`). Engine
logs go to stderr as one `key=value` line per event, at `ENGINE_LOG_LEVEL`
(default INFO).
"""

import logging
import os

from engine.app import create_app

logging.basicConfig(
    level=os.environ.get("ENGINE_LOG_LEVEL", "info").upper(),
    format="%(asctime)s %(levelname)s %(name)s %(message)s",
)

app = create_app()
