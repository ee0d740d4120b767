//! The gRPC implementation of `todo.auth.v1.AuthService`.

use todo_proto::auth::v1::{
    ChangePasswordRequest, ChangePasswordResponse, GetCurrentUserRequest, GetCurrentUserResponse,
    GetJwksRequest, GetJwksResponse, LoginRequest, LoginResponse, LogoutRequest, LogoutResponse,
    RefreshRequest, RefreshResponse, SignUpRequest, SignUpResponse, VerifyTokenRequest,
    VerifyTokenResponse, auth_service_server::AuthService,
};
use tonic::{Request, Response, Status};

/// The service state shared by every call.
#[derive(Debug, Clone, Default)]
pub struct AuthApi {}

/// The answer of an RPC that is in the contract but not served by this version.
fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "todo.auth.v1.AuthService/{rpc} is not served by this version"
    ))
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn sign_up(
        &self,
        _request: Request<SignUpRequest>,
    ) -> Result<Response<SignUpResponse>, Status> {
        Err(not_yet("SignUp"))
    }

    async fn login(
        &self,
        _request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        Err(not_yet("Login"))
    }

    async fn refresh(
        &self,
        _request: Request<RefreshRequest>,
    ) -> Result<Response<RefreshResponse>, Status> {
        Err(not_yet("Refresh"))
    }

    async fn logout(
        &self,
        _request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        Err(not_yet("Logout"))
    }

    async fn get_current_user(
        &self,
        _request: Request<GetCurrentUserRequest>,
    ) -> Result<Response<GetCurrentUserResponse>, Status> {
        Err(not_yet("GetCurrentUser"))
    }

    async fn change_password(
        &self,
        _request: Request<ChangePasswordRequest>,
    ) -> Result<Response<ChangePasswordResponse>, Status> {
        Err(not_yet("ChangePassword"))
    }

    async fn verify_token(
        &self,
        _request: Request<VerifyTokenRequest>,
    ) -> Result<Response<VerifyTokenResponse>, Status> {
        Err(not_yet("VerifyToken"))
    }

    async fn get_jwks(
        &self,
        _request: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        Err(not_yet("GetJwks"))
    }
}
