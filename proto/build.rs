//! Compiles the contracts with protox (a pure-Rust protobuf compiler, so no system `protoc` is
//! needed), generates the prost messages and tonic clients and servers, and writes the encoded
//! descriptor set (with comments) for reflection, and an HTML reference of the API made from
//! the comments, served by the gateway at `/docs`.

use std::{collections::HashMap, env, fmt::Write as _, path::PathBuf};

use prost::Message;
use prost_types::{
    DescriptorProto, FileDescriptorProto, FileDescriptorSet,
    field_descriptor_proto::{Label, Type},
};

const PROTOS: &[&str] = &[
    "todo/auth/v1/auth_service.proto",
    "todo/task/v1/task_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }

    let descriptors = protox::compile(PROTOS, [&root])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("todo_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    std::fs::write(out_dir.join("docs.html"), docs(&descriptors))?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Leading comments of one file by element path.
struct Comments(HashMap<Vec<i32>, String>);

impl Comments {
    fn of(file: &FileDescriptorProto) -> Self {
        let locations = file.source_code_info.iter().flat_map(|info| &info.location);
        Self(
            locations
                .filter_map(|l| {
                    l.leading_comments
                        .as_ref()
                        .map(|c| (l.path.clone(), c.clone()))
                })
                .collect(),
        )
    }

    fn html(&self, path: &[i32]) -> String {
        self.0.get(path).map_or_else(String::new, |comment| {
            let text: Vec<&str> = comment
                .lines()
                .map(|line| line.strip_prefix(' ').unwrap_or(line))
                .collect();
            format!(
                "<div class=\"doc\">{}</div>",
                escape(text.join("\n").trim())
            )
        })
    }
}

fn type_name(field: &prost_types::FieldDescriptorProto) -> String {
    let base = match field.r#type() {
        Type::Message | Type::Enum => {
            let name = field.type_name().trim_start_matches('.');
            let short = name.rsplit('.').next().unwrap_or(name);
            if name.starts_with("todo.") {
                format!("<a href=\"#{name}\">{short}</a>")
            } else {
                escape(name)
            }
        }
        other => format!("{other:?}").to_lowercase(),
    };
    if field.label() == Label::Repeated {
        format!("repeated {base}")
    } else {
        base
    }
}

fn message(
    out: &mut String,
    comments: &Comments,
    package: &str,
    message: &DescriptorProto,
    path: &[i32],
) {
    let full = format!("{package}.{}", message.name());
    let _ = write!(
        out,
        "<h3 id=\"{full}\">message {}</h3>{}",
        message.name(),
        comments.html(path)
    );
    if !message.field.is_empty() {
        out.push_str("<table><tr><th>Field</th><th>Type</th><th>#</th><th>Meaning</th></tr>");
        for (i, field) in message.field.iter().enumerate() {
            let field_path = [path, &[2, i32::try_from(i).unwrap_or(0)]].concat();
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                field.name(),
                type_name(field),
                field.number(),
                comments.html(&field_path)
            );
        }
        out.push_str("</table>");
    }
}

fn docs(set: &FileDescriptorSet) -> String {
    let mut out = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Todo API reference</title><style>\
         body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45;color:#1d1d1f}\
         h2{border-bottom:2px solid #ddd;padding-bottom:.3rem;margin-top:3rem}h3{margin-top:2rem}\
         h4{font-family:ui-monospace,monospace;font-weight:600;margin:1.5rem 0 .3rem}\
         .doc{white-space:pre-wrap}table{border-collapse:collapse;width:100%;margin:.5rem 0}\
         td,th{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}\
         th{background:#f5f5f7}code{font-family:ui-monospace,monospace}nav li{margin:.1rem 0}\
         </style></head><body><h1>Todo backend API</h1>\
         <p>Every service below is reachable through the gateway over gRPC (HTTP/2) and gRPC-web \
         (HTTP/1.1 or 2), and described by server reflection. Calls that need an identity take \
         <code>authorization: Bearer &lt;access token&gt;</code> metadata. Errors carry \
         <code>google.rpc.ErrorInfo</code> (and <code>BadRequest</code>, <code>RetryInfo</code> \
         where they apply) in <code>grpc-status-details-bin</code>.</p><nav><ul>",
    );
    let files: Vec<&FileDescriptorProto> = set
        .file
        .iter()
        .filter(|f| f.package().starts_with("todo."))
        .collect();
    for file in &files {
        for service in &file.service {
            let _ = write!(
                out,
                "<li><a href=\"#{0}.{1}\">{0}.{1}</a></li>",
                file.package(),
                service.name()
            );
        }
    }
    out.push_str("</ul></nav>");

    for file in &files {
        let comments = Comments::of(file);
        let package = file.package();
        let _ = write!(out, "<h2>{package}</h2>{}", comments.html(&[12]));
        for (s, service) in file.service.iter().enumerate() {
            let s = i32::try_from(s).unwrap_or(0);
            let _ = write!(
                out,
                "<h3 id=\"{package}.{0}\">service {0}</h3>{1}",
                service.name(),
                comments.html(&[6, s])
            );
            for (m, method) in service.method.iter().enumerate() {
                let short = |name: &str| name.rsplit('.').next().unwrap_or(name).to_owned();
                let _ = write!(
                    out,
                    "<h4 id=\"{package}.{}.{}\">rpc {}(<a href=\"#{}\">{}</a>) returns ({}<a href=\"#{}\">{}</a>)</h4>{}",
                    service.name(),
                    method.name(),
                    method.name(),
                    method.input_type().trim_start_matches('.'),
                    short(method.input_type()),
                    if method.server_streaming() {
                        "stream "
                    } else {
                        ""
                    },
                    method.output_type().trim_start_matches('.'),
                    short(method.output_type()),
                    comments.html(&[6, s, 2, i32::try_from(m).unwrap_or(0)])
                );
            }
        }
        for (i, msg) in file.message_type.iter().enumerate() {
            message(
                &mut out,
                &comments,
                package,
                msg,
                &[4, i32::try_from(i).unwrap_or(0)],
            );
        }
        for (e, enumeration) in file.enum_type.iter().enumerate() {
            let e = i32::try_from(e).unwrap_or(0);
            let _ = write!(
                out,
                "<h3 id=\"{package}.{0}\">enum {0}</h3>{1}<table><tr><th>Value</th><th>#</th><th>Meaning</th></tr>",
                enumeration.name(),
                comments.html(&[5, e])
            );
            for (v, value) in enumeration.value.iter().enumerate() {
                let _ = write!(
                    out,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                    value.name(),
                    value.number(),
                    comments.html(&[5, e, 2, i32::try_from(v).unwrap_or(0)])
                );
            }
            out.push_str("</table>");
        }
    }
    out.push_str("</body></html>\n");
    out
}
