"""control: policy over pykernel's pipes.

Manifests, wiring files and their lint, the plan, the executor's configuration, the state
machine and control surface, Hostess and reservations.
"""
