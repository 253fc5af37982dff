/work/main/target/debug/deps/echochat-d1ef15263e08306b.d: src/lib.rs src/admission.rs src/chat/mod.rs src/chat/command.rs src/chat/server.rs src/chat/text.rs src/echo.rs src/framing.rs src/time.rs

/work/main/target/debug/deps/libechochat-d1ef15263e08306b.rlib: src/lib.rs src/admission.rs src/chat/mod.rs src/chat/command.rs src/chat/server.rs src/chat/text.rs src/echo.rs src/framing.rs src/time.rs

/work/main/target/debug/deps/libechochat-d1ef15263e08306b.rmeta: src/lib.rs src/admission.rs src/chat/mod.rs src/chat/command.rs src/chat/server.rs src/chat/text.rs src/echo.rs src/framing.rs src/time.rs

src/lib.rs:
src/admission.rs:
src/chat/mod.rs:
src/chat/command.rs:
src/chat/server.rs:
src/chat/text.rs:
src/echo.rs:
src/framing.rs:
src/time.rs:
