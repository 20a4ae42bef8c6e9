#!/usr/bin/env python
"""
Simple client which pings each server as it is discovered.

streamkinect2's example program, run against rgbdcast. Adapted lines are marked "adapted":
the imports, and tornado's IOLoop replaced by a threading.Event (rgbdcast needs no event loop).
"""

import logging
import threading

from rgbdcast import Client, ServerBrowser  # adapted: was streamkinect2.server / .client

# adapted: no zmq ioloop to install
stop_event = threading.Event()

# Get our logger
log = logging.getLogger(__name__)


# Our listening class
class Listener(object):
    def __init__(self, browser, io_loop=None):
        self.clients = {}
        self.io_loop = io_loop  # adapted: was io_loop or IOLoop.instance()
        browser.on_add_server.connect(self.add_server, sender=browser)
        browser.on_remove_server.connect(self.remove_server, sender=browser)

        # Keep a reference to browser since we remain interested and do not
        # wish it garbage collected.
        self.browser = browser

    def add_server(self, browser, server_info):
        log.info('Discovered server "{0.name}" at "{0.endpoint}"'.format(server_info))

        client = Client(server_info.endpoint, connect_immediately=True)
        self.clients[server_info.endpoint] = client

        def pong(server_info=server_info):
            log.info('Got pong from "{0.name}"'.format(server_info))
            self.clients[server_info.endpoint].disconnect()
            del self.clients[server_info.endpoint]

        log.info('Pinging server "{0.name}"...'.format(server_info))
        client.ping(pong)

    def remove_server(self, browser, server_info):
        log.info('Server "{0.name}" at "{0.endpoint}" went away'.format(server_info))


class IOLoopThread(threading.Thread):
    def run(self):
        # Create the server browser
        log.info("Creating server browser...")
        listener = Listener(ServerBrowser())

        # Run the ioloop
        log.info("Running...")
        stop_event.wait()  # adapted: was ioloop.IOLoop.instance().start()
        listener.browser.close()  # adapted: release Zeroconf when the loop ends

        log.info("Stopping")

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
