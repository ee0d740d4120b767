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
