"""GO session insights: the history summed up per day, week or month."""
