"""Batch jobs outside the training DAG: score and doctor."""
