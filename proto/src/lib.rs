//! The gRPC contracts of the Todo backend, compiled from `proto/` at build time.
//!
//! - [`auth::v1`]: `todo.auth.v1.AuthService`: accounts, sign-in, tokens, verification.
//! - [`task::v1`]: `todo.task.v1.TaskService`: each user's tasks.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors of both, with their comments, for
//!   reflection and generated documentation.
//!
//! The build uses protox, a protobuf compiler written in Rust, so no system `protoc` is needed.

/// `todo.auth.v1`: the authentication service.
pub mod auth {
    /// Version 1 of the authentication contract.
    pub mod v1 {
        // Generated code: its shape is prost's, not ours.
        #![allow(missing_docs, clippy::all, clippy::pedantic)]
        tonic::include_proto!("todo.auth.v1");
    }
}

/// `todo.task.v1`: the task service.
pub mod task {
    /// Version 1 of the task contract.
    pub mod v1 {
        // Generated code: its shape is prost's, not ours.
        #![allow(missing_docs, clippy::all, clippy::pedantic)]
        tonic::include_proto!("todo.task.v1");
    }
}

/// The encoded `FileDescriptorSet` of every contract (and the well-known types they import),
/// source comments included.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/todo_descriptor.bin"));

/// An HTML reference of every service, RPC, message, field and enum, made from the comments of
/// the contracts at build time (served by the gateway at `/docs`).
pub const DOCS_HTML: &str = include_str!(concat!(env!("OUT_DIR"), "/docs.html"));

/// Fully-qualified gRPC service names, as used by health checks and reflection.
pub mod service_names {
    /// `todo.auth.v1.AuthService`.
    pub const AUTH: &str = "todo.auth.v1.AuthService";
    /// `todo.task.v1.TaskService`.
    pub const TASK: &str = "todo.task.v1.TaskService";
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::FileDescriptorSet;

    use super::*;

    #[test]
    fn descriptor_set_holds_both_services_with_comments() {
        let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let services: Vec<String> = set
            .file
            .iter()
            .flat_map(|file| {
                file.service
                    .iter()
                    .map(move |s| format!("{}.{}", file.package(), s.name()))
            })
            .collect();
        assert!(services.contains(&service_names::AUTH.to_owned()));
        assert!(services.contains(&service_names::TASK.to_owned()));

        // Comments survive compilation (reflection and the docs page show them).
        let task_file = set
            .file
            .iter()
            .find(|f| f.package() == "todo.task.v1")
            .unwrap();
        let info = task_file.source_code_info.as_ref().unwrap();
        assert!(
            info.location
                .iter()
                .any(|l| l.leading_comments().contains("Creates a task"))
        );

        // Imports are included, so reflection can resolve every type.
        assert!(
            set.file
                .iter()
                .any(|f| f.name() == "google/protobuf/timestamp.proto")
        );
    }

    #[test]
    fn the_docs_cover_every_rpc_and_message_with_its_comment() {
        assert!(DOCS_HTML.contains("service AuthService"));
        assert!(DOCS_HTML.contains("rpc WatchTasks("));
        assert!(DOCS_HTML.contains("returns (stream "));
        assert!(DOCS_HTML.contains("message Task<"));
        assert!(DOCS_HTML.contains("TASK_EVENT_TYPE_DELETED"));
        // Comments, escaped: the errors each RPC returns.
        assert!(DOCS_HTML.contains("ALREADY_EXISTS"));
        assert!(DOCS_HTML.contains("users/{user}/tasks/{task}"));
        assert!(!DOCS_HTML.contains("<user>"));
    }

    #[test]
    fn generated_names_match_the_contract() {
        use auth::v1::auth_service_server::SERVICE_NAME as AUTH;
        use task::v1::task_service_server::SERVICE_NAME as TASK;
        assert_eq!(AUTH, service_names::AUTH);
        assert_eq!(TASK, service_names::TASK);
    }
}

/// Property tests: every message of both contracts decodes any bytes at all without a panic,
/// and whatever decodes re-encodes to bytes that decode to the same message.
#[cfg(test)]
mod fuzz {
    use std::cell::Cell;

    use proptest::{
        prelude::*,
        test_runner::{Config, TestCaseResult, TestRunner},
    };
    use prost::Message;

    use super::{auth::v1 as auth, task::v1 as task};

    const CASES: u32 = 256;

    /// Appends `value` as a protobuf varint.
    fn varint(mut value: u64, out: &mut Vec<u8>) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    /// One field on the wire: number, then a payload of one wire type.
    #[derive(Clone, Debug)]
    enum Field {
        Varint(u32, u64),
        Fixed64(u32, u64),
        Len(u32, Vec<u8>),
        Fixed32(u32, u32),
    }

    fn encode(fields: &[Field]) -> Vec<u8> {
        let mut out = Vec::new();
        for field in fields {
            let (number, wire_type) = match field {
                Field::Varint(n, _) => (n, 0),
                Field::Fixed64(n, _) => (n, 1),
                Field::Len(n, _) => (n, 2),
                Field::Fixed32(n, _) => (n, 5),
            };
            varint(u64::from(*number) << 3 | wire_type, &mut out);
            match field {
                Field::Varint(_, v) => varint(*v, &mut out),
                Field::Fixed64(_, v) => out.extend(v.to_le_bytes()),
                Field::Len(_, bytes) => {
                    varint(bytes.len() as u64, &mut out);
                    out.extend(bytes);
                }
                Field::Fixed32(_, v) => out.extend(v.to_le_bytes()),
            }
        }
        out
    }

    /// Field numbers: the ones our messages use (1-8) mostly, then unknown and invalid ones.
    fn number() -> impl Strategy<Value = u32> {
        prop_oneof![8 => 1..=8u32, 1 => 9..=(1u32 << 29) - 1, 1 => Just(0u32)]
    }

    /// Fields whose length-delimited payloads are text, raw bytes or `nested` messages.
    fn fields(nested: BoxedStrategy<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
        let payload = prop_oneof![
            3 => any::<String>().prop_map(String::into_bytes),
            1 => prop::collection::vec(any::<u8>(), 0..12),
            3 => nested,
        ];
        let value = prop_oneof![0..3u64, any::<u64>(), Just(u64::MAX)];
        let field = prop_oneof![
            2 => (number(), value).prop_map(|(n, v)| Field::Varint(n, v)),
            1 => (number(), any::<u64>()).prop_map(|(n, v)| Field::Fixed64(n, v)),
            4 => (number(), payload).prop_map(|(n, p)| Field::Len(n, p)),
            1 => (number(), any::<u32>()).prop_map(|(n, v)| Field::Fixed32(n, v)),
        ];
        prop::collection::vec(field, 0..6).prop_map(|fields| encode(&fields))
    }

    /// Protobuf wire data nested a few levels deep, so that fields and sub-messages often
    /// decode; any bytes at all; and cuts of wire data (a truncated message).
    fn wire() -> impl Strategy<Value = Vec<u8>> {
        let leaf = fields(Just(Vec::new()).boxed());
        let nested = leaf.prop_recursive(3, 48, 6, |inner| fields(inner.boxed()));
        prop_oneof![
            4 => nested.clone(),
            1 => prop::collection::vec(any::<u8>(), 0..64),
            1 => (nested, any::<prop::sample::Index>()).prop_map(|(mut bytes, cut)| {
                bytes.truncate(cut.index(bytes.len() + 1));
                bytes
            }),
        ]
    }

    /// Decodes `bytes` as `M`; if that works, checks that the message re-encodes to its
    /// `encoded_len` bytes, which decode to the same message and re-encode identically.
    /// Returns whether `bytes` decoded.
    fn round_trips<M: Message + Default + PartialEq + std::fmt::Debug>(
        bytes: &[u8],
    ) -> Result<bool, TestCaseError> {
        let Ok(message) = M::decode(bytes) else {
            return Ok(false);
        };
        let encoded = message.encode_to_vec();
        prop_assert_eq!(encoded.len(), message.encoded_len());
        let again = M::decode(encoded.as_slice());
        prop_assert_eq!(again.as_ref(), Ok(&message));
        prop_assert_eq!(again.map(|m| m.encode_to_vec()).ok(), Some(encoded));
        Ok(true)
    }

    type Check = fn(&[u8]) -> Result<bool, TestCaseError>;

    macro_rules! checks {
        ($($message:ty),* $(,)?) => {
            [$((stringify!($message), round_trips::<$message> as Check)),*]
        };
    }

    #[test]
    fn every_message_decodes_any_bytes_and_re_encodes_to_itself() {
        let checks = checks![
            // Requests, as every server decodes them from any client.
            task::CreateTaskRequest,
            task::GetTaskRequest,
            task::ListTasksRequest,
            task::UpdateTaskRequest,
            task::SetTaskCompletedRequest,
            task::DeleteTaskRequest,
            task::WatchTasksRequest,
            auth::SignUpRequest,
            auth::LoginRequest,
            auth::RefreshRequest,
            auth::LogoutRequest,
            auth::GetCurrentUserRequest,
            auth::ChangePasswordRequest,
            auth::VerifyTokenRequest,
            auth::GetJwksRequest,
            // Responses and the messages inside them, as clients decode them.
            task::Task,
            task::CreateTaskResponse,
            task::GetTaskResponse,
            task::ListTasksResponse,
            task::UpdateTaskResponse,
            task::SetTaskCompletedResponse,
            task::DeleteTaskResponse,
            task::WatchTasksResponse,
            task::TaskEvent,
            auth::User,
            auth::TokenPair,
            auth::Jwk,
            auth::SignUpResponse,
            auth::LoginResponse,
            auth::RefreshResponse,
            auth::LogoutResponse,
            auth::GetCurrentUserResponse,
            auth::ChangePasswordResponse,
            auth::VerifyTokenResponse,
            auth::GetJwksResponse,
        ];
        let decoded: Vec<Cell<u32>> = checks.iter().map(|_| Cell::new(0)).collect();
        // Run by hand to count the decodes; no source file to keep failures next to.
        let mut runner = TestRunner::new(Config {
            failure_persistence: None,
            ..Config::with_cases(CASES)
        });
        runner
            .run(&wire(), |bytes| -> TestCaseResult {
                for ((name, check), decoded) in checks.iter().zip(&decoded) {
                    if check(&bytes).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))? {
                        decoded.set(decoded.get() + 1);
                    }
                }
                Ok(())
            })
            .unwrap();
        // The inputs must exercise decoding, not only its failures.
        for ((name, _), decoded) in checks.iter().zip(&decoded) {
            assert!(
                decoded.get() >= CASES / 16,
                "{name} decoded only {} of {CASES} inputs",
                decoded.get()
            );
        }
    }
}
