"""Carbon-intensity sources: grid APIs, trace replay, staleness handling and forecast extension."""
