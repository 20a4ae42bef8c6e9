#!/usr/bin/env python
"""
Simple server using the mock Kinect.

streamkinect2's example program, run with rgbdcast. Adapted lines are marked "adapted": the
imports, and tornado's IOLoop replaced by a threading.Event (rgbdcast needs no event loop).
"""

import logging
import threading

from rgbdcast import MockKinect, Server  # adapted: was streamkinect2.server / .mock

# adapted: no zmq ioloop to install
stop_event = threading.Event()

# Get our logger
log = logging.getLogger(__name__)


class IOLoopThread(threading.Thread):
    def run(self):
        # Create the server
        log.info("Creating server")
        server = Server()

        # Add mock kinect device to server
        kinect = MockKinect()
        server.add_kinect(kinect)

        # With the server and kinect running...
        log.info("Running server...")
        with server, kinect:
            # Run the ioloop
            stop_event.wait()  # adapted: was ioloop.IOLoop.instance().start()

        # The server has now stopped
        log.info("Stopped")

    def stop(self):
        stop_event.set()  # adapted: was io_loop.add_callback(io_loop.stop)
        self.join(3)


def main():
    # Set log level
    logging.basicConfig(level=logging.INFO)

    print("=============================================")
    print("Press Enter to exit")
    print("=============================================")

    # Start the event loop
    ioloop_thread = IOLoopThread()
    ioloop_thread.start()

    # Wait for input
    input()

    # Stop thread
    ioloop_thread.stop()


if __name__ == "__main__":
    main()
