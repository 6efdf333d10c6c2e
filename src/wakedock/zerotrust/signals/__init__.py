"""The signals of the zero-trust engine, one small class each (see `zerotrust/base.py`)."""
