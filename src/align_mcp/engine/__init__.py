"""The alignment loop: runs in, evaluators and their versions, queues and labels, holdout, alignment runs."""
