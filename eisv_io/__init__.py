"""File-system helpers with no dependency beyond the standard library, for every layer of eisv (the model
package's converters, the tools, training, model cards, experiments): importing them loads nothing else."""
