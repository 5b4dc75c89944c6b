"""Read a checkpoint's stored tensors on a background thread, one ahead of the consumer.

Reading (a system call that releases the GIL, or a copy out of a memory map)
then overlaps with whatever the consumer computes on the previous tensor. A
semaphore bounds what is held: the tensor the consumer works on and the one
being read, never more, so memory stays at about two stored tensors (with
`reuse_buffers`, two buffers of the largest tensor's size, read into in turn).

`on_stored` (hashing every stored tensor, in a fingerprint) runs on a third
thread between the two: the reading thread starts on the next tensor as soon
as one is read, so a cold read never waits for the hash, and the consumer
gets each tensor after `on_stored` has seen it.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator

import torch

from .base import TensorInfo, TensorSource

HELD = 2  # stored tensors alive at once: the consumer's and the next one


def read_ahead(source: TensorSource, plan: list[tuple[TensorInfo, Any]],
               on_stored: Callable[[TensorInfo, torch.Tensor], None] | None = None,
               reuse_buffers: bool = False) -> Iterator[tuple[TensorInfo, Any, torch.Tensor]]:
    """(info, extra, tensor) for each (info, extra) of `plan`, read in order by a background thread.

    `on_stored` runs on a thread of its own, before the tensor is handed over.
    An error while reading is raised here, at the tensor it happened on.
    With `reuse_buffers`, tensors are read into HELD buffers in turn
    (`TensorSource.read_tensor_into`): a tensor handed over is then only valid
    until the consumer asks for the next one, and must be copied to be kept.
    """
    buffers: list[torch.Tensor | None] = [None] * HELD
    slots = threading.Semaphore(HELD)
    read: queue.Queue = queue.Queue()
    handed: queue.Queue = queue.Queue()
    stop = threading.Event()

    def produce() -> None:
        try:
            for number, (info, extra) in enumerate(plan):
                slots.acquire()
                if stop.is_set():
                    return
                if reuse_buffers:  # the consumer is done with the tensor that used this buffer before
                    tensor, buffers[number % HELD] = source.read_tensor_into(info.name, buffers[number % HELD])
                else:
                    tensor = source.read_tensor(info.name)
                read.put((info, extra, tensor, None))
                del tensor
        except BaseException as exc:  # handed to the consumer, raised there
            read.put((None, None, None, exc))
            return
        read.put(None)

    def look() -> None:
        while True:
            item = read.get()
            if item is not None and item[3] is None and on_stored is not None and not stop.is_set():
                try:
                    on_stored(item[0], item[2])
                except BaseException as exc:
                    item = (None, None, None, exc)
            handed.put(item)
            if item is None or item[3] is not None:
                return
            item = None

    reader = threading.Thread(target=produce, name="read-ahead", daemon=True)
    looker = threading.Thread(target=look, name="read-ahead-on-stored", daemon=True)
    reader.start()
    looker.start()
    try:
        while True:
            item = handed.get()
            if item is None:
                return
            info, extra, tensor, error = item
            if error is not None:
                raise error
            item = None
            yield info, extra, tensor
            del tensor
            slots.release()  # the consumer is done with the previous tensor
    finally:
        stop.set()
        slots.release()
        reader.join()
        if looker.is_alive():  # the reader stopped early: no end mark was queued
            read.put(None)
        looker.join()
