"""The order-decision service: the weekly policy applied at the moment an order's signals
change, with live capacity, the same holdout, and a journal the learn loop imports."""
