"""One scoring tick and its stages: plan the window, fit what has no fresh model, score and decide every
series in one vectorised pass, build alert signals, slice root causes, refit on the cadence."""
