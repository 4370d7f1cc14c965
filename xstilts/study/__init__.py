"""Run and study configs, the plan of phases with checkpoint reuse, executors, results, reports."""
