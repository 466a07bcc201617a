"""The run machinery: a run from creation to its end state, its attempts, and the step path."""
