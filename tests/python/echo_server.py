"""Single-client echo server for the tests.

Usage: python3 echo_server.py HOST PORT

PORT 0 picks a free port. Prints `listening on HOST:PORT` (the real port) once it
listens, serves exactly one client with recv(1024) / sendall until that client
closes, then exits 0: the same socket calls as the classic tutorial server.
"""
import socket
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: echo_server.py HOST PORT")
    host, port = sys.argv[1], int(sys.argv[2])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((host, port))
        listener.listen(1)
        bound_host, bound_port = listener.getsockname()[:2]
        print(f"listening on {bound_host}:{bound_port}", flush=True)
        conn, peer = listener.accept()
        with conn:
            print(f"client {peer[0]}:{peer[1]}", flush=True)
            while True:
                chunk = conn.recv(1024)
                if not chunk:
                    break
                conn.sendall(chunk)


if __name__ == "__main__":
    main()
