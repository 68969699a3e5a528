"""Several models, several versions: the repository on disk (`layout.py`), the quality gate a
version passes before it is served (`gate.py`), the models one worker serves (`registry.py`),
and how new versions reach every worker (`rollout.py`, `control.py`)."""
