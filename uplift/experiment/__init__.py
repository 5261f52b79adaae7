"""Holdout tests: power and design, hash assignment, the sample-ratio check, the readout with
its inference, uplift metrics and off-policy values of a policy on a logged experiment."""
