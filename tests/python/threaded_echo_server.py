"""Thread-per-client echo server for the tests.

Usage: python3 threaded_echo_server.py HOST PORT

PORT 0 picks a free port. Prints `listening on HOST:PORT` (the real port) once it
listens, then accepts forever, echoing each client on its own thread with
recv(1024) / sendall, as the classic tutorial's threaded server does. Stop it with
a signal (the tests kill it by PID).
"""
import socket
import sys
import threading


def serve(conn):
    with conn:
        while True:
            chunk = conn.recv(1024)
            if not chunk:
                return
            conn.sendall(chunk)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: threaded_echo_server.py HOST PORT")
    host, port = sys.argv[1], int(sys.argv[2])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((host, port))
    listener.listen()
    bound_host, bound_port = listener.getsockname()[:2]
    print(f"listening on {bound_host}:{bound_port}", flush=True)
    while True:
        conn, _peer = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
