import FerryTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// docs/cli.md, example by example.
enum CLIExamples {
    static let doc = "docs/cli.md"
    static let a = testBytes(3_000_000, seed: 21)

    static let specs: [ExampleSpec] = [
        // A session: the file is held part way so that `ferry list` sees it moving.
        ExampleSpec(keys: [ExampleKey(doc, "Commands at a glance")]) { world, examples in
            world.substitute("https://mirror.example/pool/a.deb", with: "http://127.0.0.1:8099/pool/a.deb", first: true)
            world.serve("/pool/a.deb", a, docSHA256: "494d0c5bbd1ffd1bc97cb5c8a8c6b5b6fb0e86e0ed7e89c2f0b2cf2f0ab127d6")
            world.server.hold("/pool/a.deb", afterBytes: 1_000_000)
            try FileManager.default.createDirectory(atPath: world.pkgs + "/pool", withIntermediateDirectories: false)
            try world.startAgent()
            try world.checkAll(examples[0], 0..<4)
            let job = try world.variable("JOB")
            #expect(world.server.waitUntilHeld("/pool/a.deb"))
            #expect(waitUntil(timeout: 30) { ((try? world.client.job(job).progress.bytesTransferred) ?? 0) > 0 })
            world.transcript.volatile = [#"\d+(?:\.\d+)? (?:[KM]i)?B/2\.9 MiB \(\d+%\)"#]
            try world.checkAll(examples[0], 4..<5)
            world.server.release("/pool/a.deb")
            try world.waitForJob(job, "TRANSFERRED")
            try world.checkAll(examples[0], 5..<6)
            #expect(fileHolds(world.pkgs + "/pool/a.deb", a))
        },
        // The job's file after a failover: its mirrors are the first source and another.
        ExampleSpec(keys: [ExampleKey(doc, "ferry addmirror")]) { world, examples in
            try world.startAgent()
            let id = try world.createJob(#"{"displayName": "nightly", "files": [{"url": "http://127.0.0.1:8099/pool/a.deb", "path": "/srv/pkgs/a.deb", "mirrors": ["http://127.0.0.1:8098/pool/a.deb", "https://mirror2.example/pool/a.deb"]}]}"#)
            world.transcript.bind("acdf7d3c-bb89-4cc3-8aa6-14346cf200b4", to: id)
            try world.export("JOB", id)
            try world.checkAll(examples[0])
        },
        ExampleSpec(keys: [ExampleKey(doc, "ferry transfer")], user: .ordinary, modes: [.inProcess]) { world, examples in
            try world.checkAll(examples[0])
        },
        ExampleSpec(keys: [ExampleKey(doc, "Shell completion")], user: .ordinary, modes: [.inProcess]) { world, examples in
            for directory in [".local/share/bash-completion/completions", ".zfunc", ".config/fish/completions"] {
                let made = try world.shell.run("mkdir -p ~/\(directory)")
                #expect(made.status == 0)
            }
            try world.checkAll(examples[0])
            for (file, mark) in [(".local/share/bash-completion/completions/ferry", "-F _ferry ferry"), (".zfunc/_ferry", "#compdef ferry"),
                                 (".config/fish/completions/ferry.fish", "complete -c 'ferry'")] {
                let text = (try? String(contentsOfFile: world.home + "/" + file, encoding: .utf8)) ?? ""
                #expect(text.contains(mark) && text.contains("transfer"), "\(file) is a completion script for ferry")
            }
        },
    ]
}
