"""Route 2: prompt tuning: shallow and deep soft prompts on a frozen backbone, ensembles,
mixed-task batches."""
