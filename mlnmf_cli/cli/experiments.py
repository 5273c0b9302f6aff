"""``mlnmf compare`` and ``mlnmf random-test``."""
