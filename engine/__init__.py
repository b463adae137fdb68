"""Decision engine of carbonrouter.

The engine keeps one scheduling session per TrafficSchedule and turns the
schedule's configuration, its flavours, the grid's carbon forecast and the
credit ledger into a decision: integer traffic weights per flavour, a
processing throttle and replica ceilings, valid until a stated time.
"""
