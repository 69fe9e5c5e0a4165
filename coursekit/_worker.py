"""The student's side of the grader. It runs inside the sandbox, as the student's code does, and is trusted for nothing.

    python -I worker.py FD_IN FD_OUT WIRE_PY UID:GID|- LIMIT

It drops to UID:GID when started as root, sends its stdout and stderr to /dev/null, starts an IPython shell and
answers the grader's requests, one wire frame each (see coursekit/wire.py), read from FD_IN and answered on FD_OUT:

- ``run``: run one of the student's cells; answer whether it raised (type and first line of the message).
- ``fork``: fork a child that answers ``describe`` (what are these names: data, with the value, a function,
  something else, or missing) and ``call`` (call a function with these arguments, answer the returned data or
  the exception) until the grader kills it; then wait for ``resume``. Each test runs against its own child,
  so a test sees the state the student's cells left, and nothing the child starts outlives the test.

Nothing here decides a grade: the grader treats every answer as untrusted data.
"""
import os
import sys


def main(argv):
    fd_in, fd_out, wire_path, drop, limit = int(argv[1]), int(argv[2]), argv[3], argv[4], int(argv[5])
    import importlib.util

    spec = importlib.util.spec_from_file_location("_coursekit_wire", wire_path)
    wire = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wire)
    if drop != "-" and os.getuid() == 0:
        uid, gid = (int(x) for x in drop.split(":"))
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    import random

    def relocate(fd):  # off the small numbers a careless loop over descriptors would write to
        for _ in range(100):
            target = random.randint(200, 480)
            try:
                os.fstat(target)
            except OSError:
                os.dup2(fd, target, inheritable=False)
                os.close(fd)
                return target
        os.set_inheritable(fd, False)
        return fd

    fd_in, fd_out = relocate(fd_in), relocate(fd_out)

    def send(obj):
        try:
            payload = wire.encode(obj, limit)
        except (wire.NotData, wire.WireError) as exc:
            payload = wire.encode({"id": obj.get("id"), "ok": False, "etype": "NotData",
                                   "msg": f"{exc}, not data" if isinstance(exc, wire.NotData) else str(exc)}, limit)
        wire.write_frame(fd_out, payload)

    def receive():
        return wire.decode(wire.read_frame(fd_in, None, limit), limit)

    def first_line(exc):
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        return lines[0][:300] if lines else ""

    from traitlets.config import Config
    from IPython.core.interactiveshell import InteractiveShell

    cfg = Config()
    cfg.HistoryManager.enabled = False
    cfg.InteractiveShell.colors = "NoColor"
    cfg.InteractiveShell.xmode = "Plain"
    shell = InteractiveShell.instance(config=cfg)
    send({"op": "hello", "pid": os.getpid()})

    def describe(names):
        ns = shell.user_ns
        kinds = {}
        for name in names:
            if name not in ns:
                kinds[name] = ["missing"]
                continue
            value = ns[name]
            if isinstance(value, type(sys)):  # a module: the test imports its own copy, by name
                kinds[name] = ["module", str(getattr(value, "__name__", ""))]
                continue
            try:
                wire.encode(value, limit)
                kinds[name] = ["data", value]
            except wire.WireError as exc:
                kinds[name] = ["other", f"data larger than the limit ({exc})"]
            except wire.NotData:
                kinds[name] = ["callable"] if callable(value) else ["other", wire.describe_type(value)]
        return kinds

    def call(req):
        fn = shell.user_ns.get(req["name"])
        if fn is None and req["name"] not in shell.user_ns:
            return {"ok": False, "etype": "NameError", "msg": f"name {req['name']!r} is not defined"}
        try:
            value = fn(*req["args"], **req["kwargs"])
        except BaseException as exc:  # the student's exception, whatever it is, is reported
            return {"ok": False, "etype": type(exc).__name__, "msg": first_line(exc)}
        try:
            wire.encode(value, limit)
        except wire.NotData as exc:
            return {"ok": False, "etype": "NotData", "msg": f"returned {exc}, not data"}
        except wire.WireError as exc:
            return {"ok": False, "etype": "TooLarge", "msg": f"returned {exc}"}
        return {"ok": True, "value": value}

    def serve_test(rid):
        send({"id": rid, "pid": os.getpid()})
        while True:
            req = receive()
            op = req.get("op")
            if op == "describe":
                send({"id": req["id"], "kinds": describe(req["names"])})
            elif op == "call":
                send(dict(call(req), id=req["id"]))
            else:
                os._exit(0)

    def reap():  # the student's children that the grader killed: zombies count against the process limit
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    while True:
        try:
            req = receive()
        except KeyboardInterrupt:  # an interrupt meant for a cell that had just finished
            continue
        op = req.get("op")
        if op == "run":
            try:
                res = shell.run_cell(req["code"], store_history=False)
                err = res.error_before_exec or res.error_in_exec
                answer = {"ok": err is None, "error": f"{type(err).__name__}: {first_line(err)}" if err else ""}
            except BaseException as exc:
                answer = {"ok": False, "error": f"{type(exc).__name__}: {first_line(exc)}"}
            send(dict(answer, id=req["id"]))
        elif op == "fork":
            reap()
            try:
                pid = os.fork()
            except OSError as exc:
                send({"id": req["id"], "error": f"fork failed: {exc}"})
                continue
            if pid == 0:
                try:
                    serve_test(req["id"])
                finally:
                    os._exit(0)
            while True:
                try:
                    os.waitpid(pid, 0)
                    break
                except ChildProcessError:
                    break
                except InterruptedError:
                    continue
            while True:  # requests meant for the child that it never read are dropped here
                nxt = receive()
                if nxt.get("op") == "resume":
                    send({"id": nxt["id"], "ok": True})
                    break
        elif op == "exit":
            os._exit(0)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except BaseException:
        os._exit(3)
    os._exit(0)
