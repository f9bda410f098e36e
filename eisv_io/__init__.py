"""Helpers with no dependency beyond the standard library, for every layer of eisv (the model package's
converters, the evaluation library and tools, training, model cards, experiments): importing them loads
nothing else. Files written atomically (`atomic_files`), folders staged and swapped in whole
(`staged_folders`), the trial-list columns (`trial_schema`), the error type of bad input (`errors`)."""
