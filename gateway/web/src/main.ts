// The Todo page: sign up or in, then list (with paging), add, edit, complete and delete tasks,
// with live updates from WatchTasks. Every call is gRPC-web to the gateway that serves the page.

import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AuthService, type TokenPair } from "./gen/todo/auth/v1/auth_service_pb";
import { type Task, TaskEventType, TaskService } from "./gen/todo/task/v1/task_service_pb";

const PAGE_SIZE = 5;
const STORAGE_KEY = "todo.session";

interface Session {
  accessToken: string;
  refreshToken: string;
  email: string;
}

let session: Session | null = JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? "null");

const withToken: Interceptor = (next) => async (request) => {
  if (session) request.header.set("authorization", `Bearer ${session.accessToken}`);
  return next(request);
};
const transport = createGrpcWebTransport({ baseUrl: window.location.origin, interceptors: [withToken] });
const auth = createClient(AuthService, transport);
const tasks = createClient(TaskService, transport);

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const errorLine = $<HTMLParagraphElement>("error");

/** Shows the server's own message for a failed call. */
function showError(error: unknown) {
  errorLine.textContent = ConnectError.from(error).rawMessage;
}

function save(tokens: TokenPair | undefined, email: string) {
  if (!tokens) return;
  session = { accessToken: tokens.accessToken, refreshToken: tokens.refreshToken, email };
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
}

/** Runs `call`; on an expired access token, refreshes the session once and runs it again. */
async function authed<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (!session || ConnectError.from(error).code !== Code.Unauthenticated) throw error;
    const refreshed = await auth.refresh({ refreshToken: session.refreshToken });
    save(refreshed.tokens, session.email);
    return call();
  }
}

// Page tokens of the pages before the current one, and the current one's.
let previousTokens: string[] = [];
let currentToken = "";
let nextToken = "";

async function loadPage() {
  const page = await authed(() =>
    tasks.listTasks({ parent: "users/me", pageSize: PAGE_SIZE, pageToken: currentToken }),
  );
  nextToken = page.nextPageToken;
  render(page.tasks, page.totalSize);
}

function render(items: Task[], total: number) {
  const list = $<HTMLUListElement>("tasks");
  list.replaceChildren(...items.map(renderTask));
  $<HTMLSpanElement>("count").textContent = `${total} task${total === 1 ? "" : "s"}`;
  $<HTMLButtonElement>("prev").disabled = previousTokens.length === 0;
  $<HTMLButtonElement>("next").disabled = nextToken === "";
}

function renderTask(task: Task): HTMLLIElement {
  const item = document.createElement("li");
  item.dataset.name = task.name;
  item.classList.toggle("done", task.completed);

  const done = document.createElement("input");
  done.type = "checkbox";
  done.checked = task.completed;
  done.setAttribute("aria-label", "Done");
  done.addEventListener("change", () =>
    act(() => tasks.setTaskCompleted({ name: task.name, completed: done.checked })),
  );

  const title = document.createElement("span");
  title.className = "title";
  title.textContent = task.title;

  const edit = document.createElement("button");
  edit.textContent = "Edit";
  edit.addEventListener("click", () => {
    const changed = window.prompt("Title", task.title);
    if (changed === null) return;
    act(() =>
      tasks.updateTask({
        task: { name: task.name, title: changed, etag: task.etag },
        updateMask: { paths: ["title"] },
      }),
    );
  });

  const remove = document.createElement("button");
  remove.textContent = "Delete";
  remove.addEventListener("click", () => act(() => tasks.deleteTask({ name: task.name })));

  item.append(done, title, edit, remove);
  return item;
}

/** Runs a change, then shows the current page (or the server's error). */
async function act(change: () => Promise<unknown>) {
  errorLine.textContent = "";
  try {
    await authed(change);
    await loadPage();
  } catch (error) {
    showError(error);
  }
}

let watching: AbortController | null = null;

/** Follows WatchTasks, showing the current page again on every change; re-opens after errors. */
async function watch() {
  watching?.abort();
  const controller = new AbortController();
  watching = controller;
  while (!controller.signal.aborted && session) {
    try {
      for await (const message of tasks.watchTasks({ parent: "users/me" }, { signal: controller.signal })) {
        if (message.event && message.event.type !== TaskEventType.UNSPECIFIED) await loadPage();
      }
    } catch (error) {
      if (controller.signal.aborted) return;
      const code = ConnectError.from(error).code;
      if (code === Code.Unauthenticated && session) {
        try {
          const refreshed = await auth.refresh({ refreshToken: session.refreshToken });
          save(refreshed.tokens, session.email);
        } catch {
          return signOut();
        }
      }
    }
    // The stream ended or fell behind: list again, then re-open it.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await loadPage().catch(showError);
  }
}

function show() {
  const signedIn = session !== null;
  $<HTMLElement>("signed-in").hidden = !signedIn;
  $<HTMLElement>("signed-out").hidden = signedIn;
  $<HTMLElement>("who").textContent = session?.email ?? "";
  if (signedIn) {
    previousTokens = [];
    currentToken = "";
    loadPage().catch(showError);
    watch();
  }
}

function signOut() {
  const ending = session;
  watching?.abort();
  session = null;
  sessionStorage.removeItem(STORAGE_KEY);
  if (ending) auth.logout({ refreshToken: ending.refreshToken }).catch(() => undefined);
  show();
}

async function signIn(signUp: boolean) {
  errorLine.textContent = "";
  const email = $<HTMLInputElement>("email").value;
  const password = $<HTMLInputElement>("password").value;
  try {
    const response = signUp
      ? await auth.signUp({ email, password })
      : await auth.login({ email, password });
    save(response.tokens, response.user?.email ?? email);
    show();
  } catch (error) {
    showError(error);
  }
}

$<HTMLFormElement>("auth-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn(false);
});
$<HTMLButtonElement>("sign-up").addEventListener("click", () => signIn(true));
$<HTMLFormElement>("add-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $<HTMLInputElement>("new-title");
  act(async () => {
    await tasks.createTask({ parent: "users/me", task: { title: input.value } });
    input.value = "";
  });
});
$<HTMLButtonElement>("next").addEventListener("click", () => {
  previousTokens.push(currentToken);
  currentToken = nextToken;
  loadPage().catch(showError);
});
$<HTMLButtonElement>("prev").addEventListener("click", () => {
  currentToken = previousTokens.pop() ?? "";
  loadPage().catch(showError);
});
$<HTMLButtonElement>("sign-out").addEventListener("click", signOut);

show();
