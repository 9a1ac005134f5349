"""WeakS-to-Strong Lab: weak-to-strong generalization with an ensemble of weak teachers."""

__version__ = "0.1.0"
