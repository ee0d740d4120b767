//! The gRPC implementation of `todo.task.v1.TaskService`.

use std::pin::Pin;

use todo_proto::task::v1::{
    CreateTaskRequest, CreateTaskResponse, DeleteTaskRequest, DeleteTaskResponse, GetTaskRequest,
    GetTaskResponse, ListTasksRequest, ListTasksResponse, SetTaskCompletedRequest,
    SetTaskCompletedResponse, UpdateTaskRequest, UpdateTaskResponse, WatchTasksRequest,
    WatchTasksResponse, task_service_server::TaskService,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The service state shared by every call.
#[derive(Debug, Clone, Default)]
pub struct TaskApi {}

/// The answer of an RPC that is in the contract but not served by this version.
fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "todo.task.v1.TaskService/{rpc} is not served by this version"
    ))
}

/// The stream `WatchTasks` answers with.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchTasksResponse, Status>> + Send>>;

#[tonic::async_trait]
impl TaskService for TaskApi {
    async fn create_task(
        &self,
        _request: Request<CreateTaskRequest>,
    ) -> Result<Response<CreateTaskResponse>, Status> {
        Err(not_yet("CreateTask"))
    }

    async fn get_task(
        &self,
        _request: Request<GetTaskRequest>,
    ) -> Result<Response<GetTaskResponse>, Status> {
        Err(not_yet("GetTask"))
    }

    async fn list_tasks(
        &self,
        _request: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        Err(not_yet("ListTasks"))
    }

    async fn update_task(
        &self,
        _request: Request<UpdateTaskRequest>,
    ) -> Result<Response<UpdateTaskResponse>, Status> {
        Err(not_yet("UpdateTask"))
    }

    async fn set_task_completed(
        &self,
        _request: Request<SetTaskCompletedRequest>,
    ) -> Result<Response<SetTaskCompletedResponse>, Status> {
        Err(not_yet("SetTaskCompleted"))
    }

    async fn delete_task(
        &self,
        _request: Request<DeleteTaskRequest>,
    ) -> Result<Response<DeleteTaskResponse>, Status> {
        Err(not_yet("DeleteTask"))
    }

    type WatchTasksStream = WatchStream;

    async fn watch_tasks(
        &self,
        _request: Request<WatchTasksRequest>,
    ) -> Result<Response<Self::WatchTasksStream>, Status> {
        Err(not_yet("WatchTasks"))
    }
}
