"""What tests share besides fixtures: configurations, stand-in servers and processes, and fakes of the
clock and the directory. ``conftest.py`` keeps the fixtures only; tests import these modules by name."""
