"""The reference implementation: the payment system the testbed runs, simulates and audits.

Its modules log through `logging` and, as a library should, print nothing unless the process
that runs them configures logging (`testbed serve` does; a sim run does not: the run record
says what happened).
"""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
