// Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.

export type ErrorType = "invalid_request_error" | "authentication_error" | "not_found_error" | "rate_limit_error" | "server_error" | "service_unavailable";

/** An error the API reports to the client with an HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ErrorType = "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }

  /** err itself when it is an ApiError; otherwise a 500 that tells the client nothing internal. */
  static from(err: unknown): ApiError {
    return err instanceof ApiError ? err : new ApiError(500, "internal server error", "server_error");
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400 naming the offending parameter. */
export function badRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, message, "invalid_request_error", param, code);
}

export function modelNotFound(model: string): ApiError {
  return new ApiError(404, `The model \`${model}\` does not exist.`, "not_found_error", "model", "model_not_found");
}
