"""What tests share besides fixtures: configurations, stand-in servers and processes, fakes of the
clock and the directory, and secret files mounted the way the kubelet mounts a Secret (``kubelet``).
``conftest.py`` keeps the fixtures only; tests import these modules by name."""
