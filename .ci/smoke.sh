#!/usr/bin/env bash
# Starts the real todo-stack binary on free ports and checks each server the way a user would:
# grpcurl (reflection v1alpha) and buf curl (reflection v1) list its services, health answers,
# and SIGTERM stops it cleanly. Usage: smoke.sh PATH-TO-todo-stack
set -euo pipefail
bin=$1
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" --data-dir "$work/data" --auth-listen-addr 127.0.0.1:0 --task-listen-addr 127.0.0.1:0 \
  --gateway-listen-addr 127.0.0.1:0 >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 1 100); do [ "$(wc -l <"$work/out")" -ge 4 ] && break; sleep 0.1; done
addr() { awk -v name="$1" '$1 == name { print $2 }' "$work/out"; }
auth=$(addr auth-service); task=$(addr task-service); gateway=$(addr gateway)
echo "auth=$auth task=$task gateway=$gateway"
for _ in $(seq 1 100); do grep -q 'task-service' "$work/log" && grep -q '"auth-service"' "$work/log" && break; sleep 0.1; done

expect() { # expect NAME OUTPUT PATTERN
  if ! grep -q -- "$3" <<<"$2"; then echo "FAIL: $1: expected '$3' in:"; echo "$2"; exit 1; fi
  echo "ok: $1"
}
expect "grpcurl list auth" "$(grpcurl -plaintext "$auth" list)" "todo.auth.v1.AuthService"
expect "grpcurl list task" "$(grpcurl -plaintext "$task" list)" "todo.task.v1.TaskService"
expect "grpcurl list gateway" "$(grpcurl -plaintext "$gateway" list)" "todo.task.v1.TaskService"
expect "grpcurl describe via gateway" "$(grpcurl -plaintext "$gateway" describe todo.auth.v1.AuthService.Login)" "same answer"
expect "grpcurl describe" "$(grpcurl -plaintext "$task" describe todo.task.v1.TaskService.ListTasks)" "keyset\|by key"
expect "grpcurl health" "$(grpcurl -plaintext -d '{"service":"todo.auth.v1.AuthService"}' "$auth" grpc.health.v1.Health/Check)" "SERVING"
expect "grpcurl without a token" \
  "$(grpcurl -plaintext -d '{"parent":"users/me"}' "$task" todo.task.v1.TaskService/ListTasks 2>&1 || true)" "Unauthenticated"
signup=$(grpcurl -plaintext -d '{"email":"Smoke@Example.com","password":"correct horse battery"}' "$auth" todo.auth.v1.AuthService/SignUp)
expect "grpcurl SignUp" "$signup" '"email": "smoke@example.com"'
login=$(grpcurl -plaintext -d '{"email":"smoke@example.com","password":"correct horse battery"}' "$auth" todo.auth.v1.AuthService/Login)
token=$(sed -n 's/.*"accessToken": "\([^"]*\)".*/\1/p' <<<"$login")
[ -n "$token" ] || { echo "FAIL: no access token in: $login"; exit 1; }
expect "grpcurl GetCurrentUser" \
  "$(grpcurl -plaintext -H "authorization: Bearer $token" "$auth" todo.auth.v1.AuthService/GetCurrentUser)" "smoke@example.com"
expect "grpcurl CreateTask" \
  "$(grpcurl -plaintext -H "authorization: Bearer $token" -d '{"parent":"users/me","task":{"title":"Buy groceries 🛒"}}' "$task" todo.task.v1.TaskService/CreateTask)" "Buy groceries 🛒"
expect "grpcurl ListTasks" \
  "$(grpcurl -plaintext -H "authorization: Bearer $token" -d '{"parent":"users/me"}' "$task" todo.task.v1.TaskService/ListTasks)" '"totalSize": 1'
expect "grpcurl field violations" \
  "$(grpcurl -plaintext -format-error -d '{"email":"nope","password":"short"}' "$auth" todo.auth.v1.AuthService/SignUp 2>&1 || true)" '"field":"password"'
# Through the gateway: gRPC with grpcurl and buf curl, gRPC-web with buf curl.
expect "grpcurl Login via gateway" \
  "$(grpcurl -plaintext -d '{"email":"smoke@example.com","password":"correct horse battery"}' "$gateway" todo.auth.v1.AuthService/Login)" "accessToken"
expect "grpcurl ListTasks via gateway" \
  "$(grpcurl -plaintext -H "authorization: Bearer $token" -d '{"parent":"users/me"}' "$gateway" todo.task.v1.TaskService/ListTasks)" "Buy groceries"
expect "buf curl ListTasks via gateway (gRPC)" \
  "$(buf curl --http2-prior-knowledge --protocol grpc -H "authorization: Bearer $token" -d '{"parent":"users/me"}' "http://$gateway/todo.task.v1.TaskService/ListTasks")" "Buy groceries"
expect "buf curl Login via gateway (gRPC-web)" \
  "$(buf curl --protocol grpcweb -d '{"email":"smoke@example.com","password":"correct horse battery"}' "http://$gateway/todo.auth.v1.AuthService/Login")" "refreshToken"
expect "buf curl ListTasks via gateway (gRPC-web)" \
  "$(buf curl --protocol grpcweb -H "authorization: Bearer $token" -d '{"parent":"users/me"}' "http://$gateway/todo.task.v1.TaskService/ListTasks")" "Buy groceries"
expect "buf curl reflection via gateway (gRPC-web)" \
  "$(buf curl --protocol grpcweb --list-services "http://$gateway")" "todo.auth.v1.AuthService"
# gRPC-web over HTTP/2 as well as HTTP/1.1, binary and text.
printf '\x00\x00\x00\x00\x0a\x0a\x08users/me' >"$work/list.bin"
expect "gRPC-web binary over HTTP/2 via gateway" \
  "$(curl -sS --http2-prior-knowledge -X POST -H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1' \
      -H "authorization: Bearer $token" --data-binary @"$work/list.bin" "http://$gateway/todo.task.v1.TaskService/ListTasks" | tr -d '\0' )" "grpc-status:0"
expect "gRPC-web text over HTTP/1.1 via gateway" \
  "$(base64 -w0 "$work/list.bin" | curl -sS --http1.1 -X POST -H 'content-type: application/grpc-web-text' \
      -H 'accept: application/grpc-web-text' -H 'x-grpc-web: 1' -H "authorization: Bearer $token" --data-binary @- \
      "http://$gateway/todo.task.v1.TaskService/ListTasks" | base64 -d 2>/dev/null | tr -d '\0')" "grpc-status:0"
expect "gateway /docs" "$(curl -sS "http://$gateway/docs")" "service TaskService"
expect "buf curl Login" \
  "$(buf curl --http2-prior-knowledge --protocol grpc -d '{"email":"smoke@example.com","password":"correct horse battery"}' "http://$auth/todo.auth.v1.AuthService/Login")" "refreshToken"
expect "buf curl list (reflection v1)" \
  "$(buf curl --http2-prior-knowledge --protocol grpc --list-services "http://$task")" "todo.task.v1.TaskService"
expect "buf curl health" \
  "$(buf curl --http2-prior-knowledge --protocol grpc -d '{}' "http://$gateway/grpc.health.v1.Health/Check")" "SERVING"

kill -TERM "$pid"
status=0; wait "$pid" || status=$?
[ "$status" -eq 0 ] || { echo "FAIL: exit status $status after SIGTERM"; cat "$work/log"; exit 1; }
grep -q "stopped" "$work/log" || { echo "FAIL: no drain in the log"; cat "$work/log"; exit 1; }
echo "ok: SIGTERM drained and exited 0"
