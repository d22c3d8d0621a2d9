"""moto server, made safe for concurrent DynamoDB writes.

moto serves requests on threads without locking, and its TransactWriteItems
snapshots every table the transaction touches and restores that snapshot when a
condition fails. A write another request made in between is erased: under load
(the chaos run, a busy `shop local`) a committed stock reservation vanished when
a concurrent reservation of the same SKU failed. On AWS a transaction is isolated.
Serializing DynamoDB writes restores that guarantee; reads stay concurrent.

Usage: python local/moto_server.py [moto_server options]
"""

import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

_WRITES = threading.RLock()


def _serialized(method):
    def locked(self, *args, **kwargs):
        with _WRITES:
            return method(self, *args, **kwargs)

    locked.__name__ = method.__name__
    return locked


for _name in ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item"):
    setattr(DynamoDBBackend, _name, _serialized(getattr(DynamoDBBackend, _name)))

if __name__ == "__main__":
    sys.exit(main())
