"""Echo client for the tests: one message out, one reply back.

Usage: python3 echo_client.py HOST PORT [MESSAGE]

Without MESSAGE, the message is the first line of stdin. It makes the same socket
calls as the classic tutorial client echochat started from: connect, one sendall,
a single recv(1024), then print what came back as `reply: TEXT`.
"""
import socket
import sys


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: echo_client.py HOST PORT [MESSAGE]")
    host, port = sys.argv[1], int(sys.argv[2])
    if len(sys.argv) == 4:
        text = sys.argv[3]
    else:
        text = sys.stdin.readline().rstrip("\n")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.connect((host, port))
        sock.sendall(text.encode("utf-8"))
        reply = sock.recv(1024)
    print("reply: " + reply.decode("utf-8", errors="replace"), flush=True)


if __name__ == "__main__":
    main()
