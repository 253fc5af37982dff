/work/main/target/debug/deps/echochat-d60286928931a91e.d: src/lib.rs src/admission.rs src/chat/mod.rs src/chat/command.rs src/chat/server.rs src/chat/text.rs src/echo.rs src/framing.rs src/time.rs

/work/main/target/debug/deps/echochat-d60286928931a91e: src/lib.rs src/admission.rs src/chat/mod.rs src/chat/command.rs src/chat/server.rs src/chat/text.rs src/echo.rs src/framing.rs src/time.rs

src/lib.rs:
src/admission.rs:
src/chat/mod.rs:
src/chat/command.rs:
src/chat/server.rs:
src/chat/text.rs:
src/echo.rs:
src/framing.rs:
src/time.rs:
