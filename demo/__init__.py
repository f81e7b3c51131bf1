"""The demo and its tools, outside the code location: `make demo` (python -m demo), the story of
simulated nights it plays (story.py), and `make ui` (python -m demo.ui). The code location never
imports this folder."""
