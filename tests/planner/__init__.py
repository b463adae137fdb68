"""Tests of the forecast-optimal planner, its policy and the evaluation command."""
