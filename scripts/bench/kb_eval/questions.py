"""Evaluation questions for bench_kb.py: asked the way a user asks, each labelled with the document(s) that answer it.

Seven sets of different kinds of text, all available offline on every machine of this kind:

- ``pydoc``: the pydoc text of standard-library modules (prose and API reference); a label is a module name.
- ``man``: manual pages of the Debian base tools (option lists, upper-case section titles); a label is the page name.
- ``code``: standard-library source files (code and docstrings); a label is the path under the stdlib folder.
- ``info``: nodes of GNU info manuals (coreutils, grep, sed, findutils, diffutils, wget, gzip); a label is
  ``manual/node name``. Added after the defaults were chosen: both of its splits measure them, neither tuned them.
- ``html``: HTML reference pages as Debian ships them (Node.js API, Valgrind manual, libxslt, libffi, Expat), read
  by halguru's HTML loader; a label is ``collection/page`` (``nodejs/fs``). Also added after the defaults were chosen.
- ``md``: Markdown reference pages as this machine ships them (npm's documentation, buildah's manual pages and
  tutorials, podman's guides, docker-registry's configuration and specifications, pip's topic and reference pages,
  containerd's docs), read by halguru's own loader, gzipped ones included; a label is ``collection/path`` without
  ``.md``/``.md.gz`` (``npm/commands/npm-ci``). Also added after the defaults were chosen, written blind (no
  retrieval was run on its questions before they were fixed).
- ``admin``: manual pages of sections 5 and 8 (configuration-file formats and administration commands: apt, PAM,
  e2fsprogs, iproute2, iptables, systemd, containers, caddy...), ~300 pages chosen by rule (kb_eval/corpus.py);
  a label is ``NAME.SECTION`` (``adduser.conf.5``, ``ip-route.8``). Added after the defaults were chosen, written
  blind like ``md``, to check them on an unseen corpus: neither split is ever tuned on.

Questions avoid the documents' own phrasing where a user would (they name the task, not the option or function);
some need two facts from one page. Any labelled document counts as relevant. Even positions are the dev split
(tuning happens there), odd positions the test split (reported, never tuned on).
"""

from __future__ import annotations

Question = tuple[str, list[str]]

PYDOC: list[Question] = [
    ("how do I turn a dict into a string I can send to a web API, and back again", ["json"]),
    ("run a shell program from my script and capture what it prints", ["subprocess"]),
    ("split a sentence on several different separator characters at once", ["re"]),
    ("read a spreadsheet that was exported with commas between the fields", ["csv"]),
    ("copy a whole folder including everything inside it", ["shutil"]),
    ("what day of the week did a given date fall on", ["datetime", "calendar"]),
    ("put the items of a list in a random order", ["random"]),
    ("compute a fingerprint of a downloaded file to check it was not corrupted", ["hashlib"]),
    ("a scratch file that disappears by itself once I close it", ["tempfile"]),
    ("save an arbitrary Python object to disk and load it back later", ["pickle", "shelve"]),
    ("split a web address into host name, path and query string", ["urllib.parse"]),
    ("keep records in a small database file without running a server", ["sqlite3", "dbm"]),
    ("run several functions in background workers and collect what they return",
     ["concurrent.futures", "multiprocessing"]),
    ("add up money amounts exactly, without the errors of binary floats", ["decimal"]),
    ("find the middle value and the spread of a list of measurements", ["statistics"]),
    ("tally how many times each word occurs in a text", ["collections"]),
    ("every possible ordering of a handful of items", ["itertools"]),
    ("remember the results of a slow function so calling it again with the same argument is instant", ["functools"]),
    ("duplicate a nested list so that changing the duplicate leaves the original alone", ["copy"]),
    ("always take out the smallest element of a collection that keeps growing", ["heapq", "queue"]),
    ("insert a value into an already ordered list and keep it ordered", ["bisect"]),
    ("a class that only holds a few fields, without writing the constructor by hand", ["dataclasses"]),
    ("give readable names to a fixed group of constant values", ["enum"]),
    ("find out at runtime which parameters a function accepts", ["inspect"]),
    ("reflow a long paragraph so that no line is longer than 70 characters", ["textwrap"]),
    ("show what changed between two versions of a text, like a patch", ["difflib"]),
    ("list every file whose name ends in .txt in a folder and the folders below it", ["glob", "pathlib"]),
    ("read my program's settings from a file with [sections] and key = value lines", ["configparser"]),
    ("turn binary data into plain printable characters to put it in a URL or an email", ["base64"]),
    ("open a raw TCP connection to a server and send bytes over it", ["socket"]),
    ("fetch a web page over HTTP without installing anything", ["urllib.request", "http.client"]),
    ("build a mail message with a file attached and send it through my mail server", ["email", "smtplib"]),
    ("print a deeply nested dictionary so that it is easy to read", ["pprint"]),
    ("measure how long a small piece of code takes to run, repeated many times", ["timeit"]),
    ("make an identifier that will practically never collide with another one", ["uuid"]),
    ("generate a password reset token that is safe to use for security", ["secrets"]),
    ("accept flags like --verbose and a file name on my script's command line", ["argparse", "optparse", "getopt"]),
    ("record messages with timestamps and severity levels to a file", ["logging"]),
    ("write automated checks that my functions return the expected values", ["unittest", "doctest"]),
    ("wait for data on several sockets at once without threads", ["selectors", "select", "asyncio"]),
    ("shrink a file into the same compressed format that gunzip reads", ["gzip", "zlib"]),
    ("bundle many files into one .tar.gz archive", ["tarfile"]),
    ("react when the user presses Ctrl-C instead of dying with a traceback", ["signal"]),
    ("quote a file name so that it is safe to paste into a shell command", ["shlex"]),
    ("check that a string is a valid IPv4 address and list the hosts of a subnet", ["ipaddress"]),
    ("square root of a number and the greatest common divisor of two integers", ["math"]),
    ("turn seconds since 1970 into a human-readable local time", ["time", "datetime"]),
    ("loop over the lines of all files given on the command line, like cat does", ["fileinput"]),
    ("tell that a file ending in .png is an image from its name alone", ["mimetypes"]),
    ("make text safe to insert in a web page by replacing < and & characters", ["html"]),
    ("convert a colour from red-green-blue to hue-saturation-value", ["colorsys"]),
    ("pack integers and floats into bytes in a fixed binary layout for a file format", ["struct"]),
    ("a fixed-size buffer that forgets the oldest items as new ones arrive", ["collections"]),
    ("lock a shared counter so that two threads never update it at the same moment", ["threading"]),
]

MAN: list[Question] = [
    ("show file sizes like 1K or 234M when listing a folder", ["ls", "du", "df"]),
    ("list a folder with the most recently changed files first", ["ls"]),
    ("copy files but keep their original timestamps and permissions", ["cp"]),
    ("rename a file without clobbering one that already has the target name", ["mv"]),
    ("delete a folder and everything in it without being asked for confirmation", ["rm"]),
    ("pull a single file out of a compressed archive bundle", ["tar"]),
    ("look for a word in every file below a folder, upper or lower case", ["grep"]),
    ("show a few lines before and after each line that matched a pattern", ["grep"]),
    ("locate files bigger than 100 megabytes that were changed in the last week", ["find"]),
    ("substitute a string in a file and save the file directly", ["sed"]),
    ("add up the numbers of the third column of a text file", ["gawk", "mawk", "awk"]),
    ("order lines by their numeric value, biggest first", ["sort"]),
    ("count how many times each repeated line appears", ["uniq"]),
    ("take the second field of each colon-separated line of /etc/passwd", ["cut", "gawk"]),
    ("turn lowercase letters into capitals in a stream of text", ["tr"]),
    ("allow everybody to execute a script file", ["chmod"]),
    ("give a whole directory tree to another user", ["chown"]),
    ("make a shortcut name that points at another file", ["ln"]),
    ("how much room is left on each mounted disk", ["df"]),
    ("which folders use up the most space", ["du"]),
    ("log into a remote machine with a specific private key and a non-standard port", ["ssh"]),
    ("copy a file to a remote server over an encrypted connection", ["scp", "rsync", "sftp"]),
    ("mirror a folder to a backup, removing files that no longer exist in the original", ["rsync"]),
    ("download a file, following redirects, and keep the name it has on the server", ["curl", "wget"]),
    ("continue a download that was interrupted half-way", ["wget", "curl"]),
    ("every process of every user with its complete command line", ["ps"]),
    ("stop a process that ignores a polite request to quit, given its number", ["kill"]),
    ("start a long job so that it gets less CPU than other programs", ["nice", "renice"]),
    ("run a command once per batch of names read from standard input", ["xargs"]),
    ("send a command's output to a file and to the screen at the same time", ["tee"]),
    ("keep printing a log file as new lines are added to it", ["tail", "less"]),
    ("count the lines and words of a file", ["wc"]),
    ("compare two files and show what differs between them", ["diff", "cmp", "sdiff"]),
    ("apply the changes described in a .diff file to a source tree", ["patch"]),
    ("compress a file but keep the uncompressed original too", ["gzip", "xz", "bzip2", "zstd"]),
    ("see what a zip archive holds without unpacking it", ["unzip", "zipinfo"]),
    ("print tomorrow's date in a format of my choosing", ["date"]),
    ("set a file's modification time to a given moment without touching its contents", ["touch"]),
    ("create a folder and all the missing parent folders in one go", ["mkdir"]),
    ("show a file's inode number and when it was last read", ["stat"]),
    ("tell what kind of data a file holds whatever its name is", ["file"]),
    ("scroll back and forth through long output one screen at a time", ["less", "more"]),
    ("which programs are waiting for connections on which network ports", ["ss"]),
    ("show the addresses assigned to the machine's network interfaces", ["ip"]),
    ("read one service's log messages since the machine last started", ["journalctl"]),
    ("make a service come up by itself whenever the machine boots", ["systemctl"]),
    ("add a new login account that gets its own home directory", ["useradd", "adduser"]),
    ("run a program with an empty environment, no variables inherited", ["env"]),
    ("keep a program running after I close my terminal session", ["nohup", "setsid"]),
    ("give up on a command if it is still running after ten seconds", ["timeout"]),
    ("rerun a command every two seconds and show its output full screen", ["watch"]),
    ("cut a huge file into 100 MB pieces", ["split"]),
    ("write a disk image onto a USB stick and watch how far it got", ["dd"]),
    ("create a uniquely named scratch directory from a shell script", ["mktemp"]),
    ("the absolute path of a file with every symbolic link resolved", ["realpath", "readlink"]),
]

CODE: list[Question] = [
    ("where is it decided how many worker threads a thread pool gets when I don't say",
     ["concurrent/futures/thread.py"]),
    ("how does the random module turn a string seed into a number", ["random.py"]),
    ("the algorithm that finds the longest matching block shared by two sequences", ["difflib.py"]),
    ("the code that breaks text into lines of a given width and splits words that are too long", ["textwrap.py"]),
    ("where are the HTTP status numbers and their reason phrases listed", ["http/__init__.py"]),
    ("the code that recognises a [section] header line in a settings file", ["configparser.py"]),
    ("how the whole-tree copy handles symbolic links it meets", ["shutil.py"]),
    ("the median computed for data grouped into intervals", ["statistics.py"]),
    ("making a version 4 universally unique identifier from random bytes", ["uuid.py"]),
    ("how the least-recently-used cache keeps its entries in order", ["functools.py"]),
    ("where the source of the generated __init__ for a class with typed fields is built", ["dataclasses.py"]),
    ("moving an item down the heap until the heap property holds again", ["heapq.py"]),
    ("the pure Python binary search for the insertion point in a sorted list", ["bisect.py"]),
    ("how a tuple subclass with named fields is created from a string of names", ["collections/__init__.py"]),
    ("expanding a leading tilde into the user's home directory on Unix", ["posixpath.py"]),
    ("how a string is quoted so that a POSIX shell reads it as one word", ["shlex.py"]),
    ("turning a shell wildcard pattern like *.txt into a regular expression", ["fnmatch.py"]),
    ("the URL-safe variant that swaps + and / for other characters", ["base64.py"]),
    ("where a zip file's central directory at the end of the archive is read", ["zipfile.py"]),
    ("how a random name is picked for a new temporary file", ["tempfile.py"]),
    ("finding the closest fraction whose denominator stays below a limit", ["fractions.py"]),
    ("the code that lays out one month as a text grid", ["calendar.py"]),
    ("how the pretty printer notices a structure that contains itself", ["pprint.py"]),
    ("the table that maps file extensions to content types", ["mimetypes.py"]),
    ("parsing a netmask and doing arithmetic on IPv4 network addresses", ["ipaddress.py"]),
    ("guessing the delimiter and quote character of a CSV sample", ["csv.py"]),
    ("how the usage line of a command-line parser is formatted and wrapped", ["argparse.py"]),
    ("a log handler that starts a new file once the current one reaches a size", ["logging/handlers.py"]),
    ("how a log record's creation time is formatted into text", ["logging/__init__.py"]),
    ("the metaclass that builds enumeration classes", ["enum.py"]),
    ("reading a password from the terminal without showing what is typed", ["getpass.py"]),
    ("how the timing tool picks the number of loops by itself", ["timeit.py"]),
    ("the memo dictionary used when copying objects recursively", ["copy.py"]),
    ("how the recursive ** pattern walks into subdirectories when matching file names", ["glob.py"]),
    ("turning a list of arguments into one Windows command-line string", ["subprocess.py"]),
    ("a FIFO that blocks producers when it is full, built on condition variables", ["queue.py"]),
    ("a thread that waits for a delay and then calls a function, and can be cancelled", ["threading.py"]),
    ("replacing quotes and angle brackets with entities for HTML", ["html/__init__.py"]),
    ("percent-encoding the characters of a URL path", ["urllib/parse.py"]),
    ("the opcodes of the serialisation protocol and what each one pushes", ["pickle.py", "pickletools.py"]),
    ("how $name placeholders in a template string are substituted", ["string.py"]),
    ("writing the header of a gzip file with the original file name and modification time", ["gzip.py"]),
    ("the extraction filters that refuse archive members with absolute paths or links outside", ["tarfile.py"]),
    ("how a random token for URLs is generated for security-sensitive use", ["secrets.py"]),
    ("building the signature object of a function from its code", ["inspect.py"]),
    ("walking a directory tree top-down or bottom-up, yielding each folder's files", ["os.py"]),
    ("a callable that fetches an item by key or index, in pure Python", ["operator.py"]),
    ("how the default web browser to open a URL is found", ["webbrowser.py"]),
    ("the request handler that serves files and lists directories over HTTP", ["http/server.py"]),
    ("a mapping whose values vanish once nothing else refers to them", ["weakref.py"]),
    ("how a generator function is turned into a with-statement object", ["contextlib.py"]),
    ("running events at scheduled times with a priority queue", ["sched.py"]),
    ("safely evaluating a string that holds only a Python literal", ["ast.py"]),
    ("splitting an email address header into display name and address", ["email/utils.py"]),
]

C, F, D, W = "coreutils/", "find/", "diffutils/", "wget/"
DATES = ["Relative items in date strings", "Date input formats", "Day of week items", "General date syntax"]
INFO: list[Question] = [
    ("print a file's lines in reverse order, last line first", [C + "tac invocation"]),
    ("number every line of a file in the output", [C + "nl invocation", C + "cat invocation"]),
    ("look at the raw bytes of a binary file in hexadecimal", [C + "od invocation"]),
    ("wrap long lines so that none is wider than 60 columns", [C + "fold invocation", C + "fmt invocation"]),
    ("show only the first 20 lines of a huge log", [C + "head invocation"]),
    ("break a large file into pieces of 100 megabytes each", [C + "split invocation"]),
    ("verify a downloaded image against the checksum list published next to it",
     [C + "md5sum invocation", C + "sha2 utilities", C + "sha1sum invocation", C + "b2sum invocation",
      C + "cksum invocation"]),
    ("put the lines of a file into a random order", [C + "shuf invocation"]),
    ("lines that appear in the first list but not in the second", [C + "comm invocation"]),
    ("merge two files line by line on a shared key column, like a database join",
     [C + "join invocation", C + "General options in join"]),
    ("glue the lines of two files together side by side separated by tabs", [C + "paste invocation"]),
    ("replace every tab with spaces", [C + "expand invocation"]),
    ("delete all digits from a stream of text", [C + "tr invocation", C + "Squeezing and deleting"]),
    ("list a folder with the most recently modified files first", [C + "ls invocation", C + "Sorting the output"]),
    ("copy a file but leave the destination alone if it already exists", [C + "cp invocation"]),
    ("overwrite a file's contents several times so that it cannot be recovered", [C + "shred invocation"]),
    ("make a file exactly one gigabyte long, or cut one down to a given size", [C + "truncate invocation"]),
    ("flush everything cached in memory out to the disk", [C + "sync invocation"]),
    ("what the digits in 755 mean when setting who may read, write and run a file",
     [C + "Numeric Modes", C + "Mode Structure", F + "Numeric Modes", F + "Mode Structure"]),
    ("check in a shell script whether a path exists and is a directory",
     [C + "File type tests", C + "test invocation"]),
    ("compare two numbers in a shell if statement", [C + "Numeric tests", C + "test invocation"]),
    ("strip the folder part from a path and keep only the file name", [C + "basename invocation"]),
    ("print which terminal I am typing on", [C + "tty invocation"]),
    ("how many processors can a program use here", [C + "nproc invocation"]),
    ("run a program as if another folder were the root of the filesystem", [C + "chroot invocation"]),
    ("make a program's output reach the next command in a pipe line by line, not in big blocks",
     [C + "stdbuf invocation"]),
    ("break a number into its prime factors", [C + "factor invocation"]),
    ("turn 1048576 into a readable size like 1.0M", [C + "numfmt invocation"]),
    ("print the numbers from 1 to 100 counting by fives", [C + "seq invocation"]),
    ("which date strings like 'next thursday' or '2 days ago' are understood",
     [C + d for d in DATES] + [F + d for d in DATES]),
    ("print today's date as year-month-day",
     [C + "date invocation", C + "Date conversion specifiers", C + "Examples of date"]),
    ("why does file10 come after file9 when sorting names that contain numbers",
     [C + "Version sort overview", C + "Version sort ordering", C + "Version sort and natural sort",
      C + "Using version sort in GNU Coreutils", C + "Version sort is not the same as numeric sort"]),
    ("show only the part of each line that matched, not the whole line", ["grep/General Output Control"]),
    ("put the line number in front of each matching line", ["grep/Output Line Prefix Control"]),
    ("search folders recursively but skip the .git directories", ["grep/File and Directory Selection"]),
    ("match a pattern only as a whole word", ["grep/Matching Control"]),
    ("what the search tool's exit code means when nothing was found", ["grep/Exit Status"]),
    ("when do parentheses need a backslash in front of them in a pattern",
     ["grep/Basic vs Extended", "sed/BRE vs ERE", "sed/BRE syntax", "sed/ERE syntax"]),
    ("edit a file in place and keep a backup copy of the original", ["sed/Command-Line Options"]),
    ("replace only the second occurrence of a word on each line", ['sed/The "s" Command']),
    ("delete the lines from one pattern up to another", ["sed/Range Addresses", "sed/Regexp Addresses"]),
    ("join every line that ends with a backslash to the next one", ["sed/Joining lines", "sed/Multiline techniques"]),
    ("what the hold space is for in a stream editing script",
     ["sed/Hold and Pattern Buffers", "sed/Execution Cycle", "sed/Multiline techniques", "sed/Other Commands"]),
    ("files changed less than ten minutes ago", [F + "Age Ranges", F + "Time"]),
    ("files that belong to a user who no longer exists", [F + "Owner"]),
    ("remove all empty folders below the current one", [F + "Cleaning Up", F + "Size", F + "Delete Files"]),
    ("pass file names with spaces or newlines in them safely to another command",
     [F + "Safe File Name Handling", F + "Unsafe File Name Handling", F + "Unusual Characters in File Names",
      F + "Strange File Names", F + "Problems with -exec and filenames", F + "xargs options"]),
    ("run several copies of a command at once over a list of files",
     [F + "Controlling Parallelism", F + "xargs options"]),
    ("find a file by name quickly from a prebuilt database", [F + "Invoking locate", F + "Fast Full Name Search"]),
    ("ignore changes in the amount of white space when comparing files", [D + "White Space", D + "diff Options"]),
    ("show the differences of two files in two columns",
     [D + "Side by Side", D + "Side by Side Format", D + "sdiff Options", D + "Invoking sdiff"]),
    ("undo a patch that was already applied", [D + "Reversed Patches", D + "patch Options"]),
    ("try a patch without changing anything, to see whether it would apply", [D + "Dry Runs", D + "patch Options"]),
    ("combine my edits and someone else's edits of the same original file",
     [D + "diff3 Merging", D + "Comparing Three Files", D + "Marking Conflicts", D + "Interactive Merging"]),
    ("download a whole website to read offline, with links pointing to the local copies",
     [W + "Recursive Retrieval Options", W + "Advanced Usage", W + "Recursive Download"]),
    ("fetch a file again only if the copy on the server is newer", [W + "Time-Stamping", W + "Time-Stamping Usage"]),
    ("keep a download from using all of my bandwidth", [W + "Download Options"]),
    ("settings for every download, kept in a file in my home folder",
     [W + "Startup File", W + "Wgetrc Location", W + "Wgetrc Commands", W + "Wgetrc Syntax", W + "Sample Wgetrc"]),
    ("accept an HTTPS server whose certificate is invalid", [W + "HTTPS (SSL-TLS) Options"]),
    ("compress as small as possible even if it takes longer", ["gzip/Invoking gzip"]),
    ("put several compressed files one after another into a single file", ["gzip/Advanced usage"]),
]

# Added after every default was chosen (like info): both splits are unseen. Collections interleaved so that both
# splits hold each of them; several questions need two facts, a few are answered deep inside a long page.
N, V, X = "nodejs/", "valgrind/", "libxslt/"
HTML: list[Question] = [
    ("get told whenever a file inside a folder is changed, renamed or added", [N + "fs"]),
    ("my C program branches on a value that was never set: find where that value originally came from",
     [V + "mc-manual", V + "quick-start", V + "faq"]),
    ("apply a stylesheet to an XML file from the shell and save the result in a file",
     [X + "xsltproc", X + "xsltproc2"]),
    ("start another program from my script and read what it prints while it is still running",
     [N + "child_process"]),
    ("list every block my program allocated and never gave back, each with the call stack that allocated it",
     [V + "mc-manual", V + "quick-start"]),
    ("hand a plain text value to a stylesheet from the command line: the value I pass arrives empty",
     [X + "FAQ", X + "xsltproc"]),
    ("store users' passwords as slow salted hashes instead of plain text", [N + "crypto", N + "webcrypto"]),
    ("silence reports coming from a system library I cannot fix, so they stop showing up on every run",
     [V + "manual-core", V + "mc-manual"]),
    ("keep the command-line transformer from downloading DTDs from the internet", [X + "xsltproc", X + "xsltproc2"]),
    ("ask something at the terminal and wait for what the person types", [N + "readline"]),
    ("write the checker's report into a file instead of the terminal, one file per process", [V + "manual-core"]),
    ("see how much time each template takes during a transformation",
     [X + "xsltproc", X + "xsltproc2", X + "libxslt-transform"]),
    ("move a heavy number-crunching job off the main thread so the server keeps answering requests",
     [N + "worker_threads"]),
    ("detect two threads touching the same variable without holding a lock", [V + "hg-manual", V + "drd-manual"]),
    ("write my own function in C and call it from inside a stylesheet", [X + "extensions", X + "libxslt-extensions"]),
    ("compress an HTTP response before sending it to a browser that accepts that", [N + "zlib"]),
    ("which functions of my program execute the most instructions, annotated line by line in the source",
     [V + "cg-manual", V + "cl-manual"]),
    ("forbid a stylesheet from writing files or creating folders on disk", [X + "libxslt-security", X + "xsltproc"]),
    ("how much RAM is free on this machine and how many processor cores it has", [N + "os"]),
    ("how my program's heap grows over time and which allocation sites dominate at the peak", [V + "ms-manual"]),
    ("use the XSLT library from a Python script", [X + "python"]),
    ("how long has my program been running, and how much memory is it using right now", [N + "process"]),
    ("find heap blocks that are allocated but hardly ever read or written, or kept far longer than needed",
     [V + "dh-manual"]),
    ("the smallest C program that loads a stylesheet, transforms a document and writes out the result",
     [X + "libxslttutorial", X + "libxslt_pipes"]),
    ("run one copy of my web server per CPU core, all of them listening on the same port", [N + "cluster"]),
    ("freeze the program at the first error the checker finds and inspect it with gdb",
     [V + "manual-core-adv", V + "manual-core"]),
    ("turn on the date, math and string extension functions in my own C program", [X + "libexslt-exslt"]),
    ("serve my site over an encrypted connection with my own certificate and private key",
     [N + "https", N + "tls"]),
    ("tell the memory checker about my own pool allocator so it tracks the pieces I hand out",
     [V + "mc-manual", V + "manual-core-adv"]),
    ("how a stylesheet is compiled before it is applied, and how templates get matched to nodes",
     [X + "internals"]),
    ("write unit tests and run them with nothing but the runtime itself, no framework to install", [N + "test"]),
    ("my program overflows its stack only under the checker: give the main thread a bigger stack",
     [V + "manual-core"]),
    ("which member of the transformation context holds the node that output is currently added to",
     [X + "libxslt-xsltInternals"]),
    ("check in a test that two nested objects hold the same values, not that they are the same object",
     [N + "assert"]),
    ("my program needs a system call the tool does not support yet: how do I add it", [V + "dist.readme-missing"]),
    ("pass parameter values to a stylesheet from my C code",
     [X + "libxslt-transform", X + "libxslttutorial", X + "libxslt_pipes"]),
    ("time a piece of code with sub-millisecond precision", [N + "perf_hooks", N + "process"]),
    ("what the lines of the profile data file written by the call-graph profiler mean", [V + "cl-format"]),
    ("send the library's error messages to a function of mine instead of standard error",
     [X + "libxslt-xsltutils"]),
    ("evaluate a snippet of code in a sandbox that has its own separate set of globals", [N + "vm"]),
    ("let my program behave differently when it notices it is being run under the tool", [V + "manual-core-adv"]),
    ("control how external documents are fetched when a stylesheet pulls in other files",
     [X + "libxslt-documents"]),
    ("my program dies out of memory on big inputs: raise the heap limit when starting it", [N + "cli"]),
    ("make a test script fail whenever the checker found any error", [V + "manual-core"]),
    ("run several transformations in a row inside one process, each output feeding the next",
     [X + "libxslt_pipes"]),
    ("what to put in my project's manifest so that .js files may use import and export", [N + "packages", N + "esm"]),
    ("what separates lost, possibly lost and still reachable memory in the leak summary",
     [V + "mc-manual", V + "faq"]),
    ("compiler and linker flags needed to build my program against the XSLT library", [X + "FAQ"]),
    ("my server fails to start because the port is already taken: what the error means and how to retry",
     [N + "errors", N + "net"]),
    ("collect the profile only around the interesting part of the program, not from the start",
     [V + "cl-manual"]),
    ("raise the limit on how deeply templates may call each other",
     [X + "xsltproc", X + "xsltproc2", X + "libxslt-xslt"]),
    ("keep per-request data reachable across all the asynchronous calls of one request without passing it along",
     [N + "async_context"]),
    ("format DocBook documents without the stylesheets being fetched over the network every time",
     [X + "docbook", X + "xsltproc"]),
    ("write a diagnostic summary file automatically when the process crashes", [N + "report", N + "cli"]),
    ("call a C function whose argument types are only known while my program runs",
     ["libffi/Introduction", "libffi/The-Basics", "libffi/Simple-Example"]),
    ("describe the layout of a C struct so it can be passed by value through a dynamic call",
     ["libffi/Structures", "libffi/Type-Example", "libffi/Size-and-Alignment"]),
    ("ship my program as one executable file that bundles the runtime", [N + "single-executable-applications"]),
    ("only let my script read files under one folder and forbid writing anywhere", [N + "permissions", N + "cli"]),
    ("make a plain C function pointer that ends up in my interpreter's generic handler",
     ["libffi/The-Closure-API", "libffi/Closure-Example"]),
    ("feed an XML document to a streaming parser in pieces, as they arrive from the network", ["expat/reference"]),
    ("create a file only if it does not exist yet, and fail otherwise", [N + "fs"]),
    ("reuse TCP connections between successive outgoing HTTP requests instead of reconnecting each time",
     [N + "http"]),
    ("protect my XML parser against documents whose entities expand into gigabytes", ["expat/reference"]),
    ("how a desktop decides a file's type from its first bytes when the name gives no clue",
     ["shared-mime-info/x34"]),
    ("chain a file read, a compressor and a file write, with one place to handle an error from any of them",
     [N + "stream", N + "zlib"]),
    ("read the search parameters out of a web address", [N + "url", N + "querystring"]),
    ("turn incoming bytes into text when a multi-byte character may be split across two chunks",
     [N + "string_decoder"]),
    ("is my output going to a terminal, and how many columns wide is it", [N + "tty"]),
    ("step through my script line by line and set breakpoints, from the terminal", [N + "debugger"]),
]

# Added after every default was chosen (like info and html): both splits are unseen. Written from the pages alone,
# before any retrieval ran on them. Questions come in pairs (dev, then test), most of one collection and kind, so that
# both splits hold each collection and each kind: "why" questions, differences, two facts from one page, and single
# options deep inside a long page (npm's config, buildah build).
NC, NU, NF = "npm/commands/", "npm/using-npm/", "npm/configuring-npm/"
B, P, R, PIP, C = "buildah/", "podman/", "docker-registry/", "pip/", "containerd/"
MD: list[Question] = [
    ("since upgrading the package manager, nothing that my dependencies' setup steps print shows up during an "
     "install any more: why", [NU + "logging", NU + "scripts"]),
    ("why did installing a library by its name give me an older release than the newest one shown on the registry",
     [NC + "npm-install"]),
    ("my container build needs an API key, but the key must not be left anywhere in the finished image",
     [B + "buildah-build.1"]),
    ("building the same sources twice gives images with different digests: how do I make the result reproducible",
     [B + "buildah-build.1", B + "buildah-commit.1"]),
    ("my project's script needs to know which folder I was in when I typed the command, but it always starts in the "
     "project's top folder", [NU + "scripts", NC + "npm-run"]),
    ("in a repository holding several packages, run the test script of each of them and skip the ones that have none",
     [NU + "workspaces", NC + "npm-run", NU + "config"]),
    ("make my own image registry keep local copies of what it fetches from Docker Hub, so machines pull from it "
     "instead", [R + "configuration"]),
    ("change a single setting of the registry, such as where it stores data, from an environment variable instead of "
     "replacing its whole config file", [R + "configuration"]),
    ("keep the package manager's debug log files in my project folder instead of the cache, and how to stop it "
     "writing them at all", [NU + "logging", NU + "config"]),
    ("I removed my package from the registry entirely: how long until I can publish it again, and can I reuse the "
     "version number it had", [NC + "npm-unpublish"]),
    ("installing Python packages fails with certificate verify failed behind my company's proxy: make the installer "
     "trust the operating system's certificates", [PIP + "topics/https-certificates"]),
    ("my private Python package index needs a login: give the installer the credentials without writing the "
     "password into the index URL", [PIP + "topics/authentication"]),
    ("depend on two different major versions of the same library at the same time, under different names",
     [NC + "npm-install", NU + "package-spec"]),
    ("work on a library and an app side by side so that the app uses my local checkout of the library and sees each "
     "edit without reinstalling", [NC + "npm-link", NU + "developers"]),
    ("my containers, run as a normal user, all stop as soon as I log out of my SSH session",
     [P + "troubleshooting"]),
    ("as a normal user my container cannot listen on port 80: why, and what can the administrator change",
     [P + "rootless"]),
    ("an install stops because two plugins demand incompatible versions of the host library they plug into: how do "
     "I get past it anyway", [NU + "config"]),
    ("new dependencies should be recorded so that they only accept bug-fix updates, not new minor versions, by "
     "default", [NU + "config"]),
    ("content I just wrote through the container daemon's Go client disappears before I get to use it",
     [C + "garbage-collection"]),
    ("run the container daemon itself without root privileges", [C + "rootless"]),
    ("in the report of stale dependencies, what is the difference between the wanted and the latest column, and what "
     "does a yellow line mean", [NC + "npm-outdated"]),
    ("what is different about the clean install meant for CI compared to the normal install, and why does it fail "
     "when the lock file and the manifest disagree", [NC + "npm-ci"]),
    ("mounting a working container's file system fails when I am not root",
     [B + "buildah-mount.1", B + "buildah-unshare.1", B + "tutorials/01-intro"]),
    ("steps I set in a base image to run later, when someone builds on top of it, are silently dropped from the "
     "image", [B + "tutorials/03-on-build", B + "buildah-config.1"]),
    ("my compiled output folder is listed in .gitignore and now it is missing from the package I published",
     [NU + "developers", NF + "package-json", NC + "npm-publish"]),
    ("people who install my command-line tool should get exactly the dependency versions I tested it with",
     [NF + "npm-shrinkwrap-json", NC + "npm-shrinkwrap", NF + "package-lock-json", NF + "package-json"]),
    ("delete an image from my registry over HTTP: why does the request with the tag fail, and what must I send "
     "instead", [R + "spec/api"]),
    ("an old client pulls an image that was pushed in the newer multi-platform format: what does the registry send "
     "it, and how does a client say it understands the new format", [R + "spec/manifest-v2-2"]),
    ("a dependency of a dependency pulls in a version with a security hole: force every copy in my tree to the fixed "
     "version", [NF + "package-json"]),
    ("make everyone working on the repository use the same runtime and package manager, and fail the install if they "
     "do not", [NF + "package-json"]),
    ("what is the difference between the two container tools of this family, and why don't the containers made by "
     "one show up in the other's list", [B + "README", P + "README"]),
    ("after pushing my image built for several CPU architectures, only the list arrived in the registry, not the "
     "images for each architecture", [B + "buildah-manifest.1", B + "buildah-manifest-push.1", B + "buildah-push.1"]),
    ("I ran the update command but package.json still lists the old version ranges: why",
     [NC + "npm-update"]),
    ("why does the registry reject v2 as the name of a release channel label for my package",
     [NC + "npm-dist-tag"]),
    ("files the container wrote into a shared host folder belong to a strange large user number, and I cannot read "
     "or delete them", [P + "troubleshooting"]),
    ("pressing ctrl-p in a shell inside a container does not bring back my previous command",
     [P + "troubleshooting"]),
    ("find out which of my dependencies caused a certain package to be installed", [NC + "npm-explain", NC + "npm-ls"]),
    ("I edited a file inside node_modules by hand and the package manager does not notice: what stale file should "
     "I delete", [NF + "package-lock-json"]),
    ("the Python installer keeps downloading version after version of the same package before it finally installs: "
     "how do I make it faster", [PIP + "topics/dependency-resolution"]),
    ("refuse to install any Python package whose downloaded file does not match a checksum I recorded",
     [PIP + "topics/secure-installs", PIP + "topics/repeatable-installs"]),
    ("only install dependency versions that have been out for at least a week, except our company's own packages",
     [NU + "config", NC + "npm-install", NC + "npm-install-test", NC + "npm-outdated", NC + "npm-query",
      NC + "npm-update"]),
    ("change the git commit message created when I bump my package's version so that it contains the new number",
     [NC + "npm-version", NU + "config"]),
    ("make the container daemon pull Docker Hub images through a local mirror, and skip certificate checks for our "
     "internal registry", [C + "hosts"]),
    ("let two tools, say a Docker engine and Kubernetes, share one container daemon without seeing each other's "
     "containers and images", [C + "namespaces", C + "README"]),
    ("make my CI job fail on the security check only for serious problems, not for low ones",
     [NC + "npm-audit", NU + "config"]),
    ("why does publishing a package named after my account fail with a payment required error",
     [NC + "npm-access", NU + "scope"]),
    ("build images from my own Go program instead of calling the command-line tool",
     [B + "tutorials/04-include-in-your-build-tool"]),
    ("build container images inside an unprivileged pod on an OpenShift cluster",
     [B + "tutorials/05-openshift-rootless-build"]),
    ("run a command-line tool from a package without adding it to my project, and without being asked to confirm "
     "the download in a script", [NC + "npm-exec", NC + "npx"]),
    ("after upgrading the JavaScript runtime my compiled C++ add-ons fail to load", [NC + "npm-rebuild"]),
    ("stop clients from pushing to my registry while I reclaim disk space from deleted images", [R + "configuration"]),
    ("the registry answers my client's first request with 401 and a header naming an authentication server: what "
     "must the client do next", [R + "spec/auth/token", R + "spec/auth/jwt"]),
    ("the install lists dependencies whose setup scripts were skipped: allow just the two I trust, each only at the "
     "version I reviewed", [NC + "npm-install-scripts", NC + "npm-approve-scripts"]),
    ("let my CI pipeline upload new releases but have a person confirm with two-factor before they become public",
     [NC + "npm-stage"]),
    ("control containers on a remote Linux server from my laptop over SSH", [P + "remote_client"]),
    ("coming from Docker: creating a volume that already exists now fails; what else behaves differently, and which "
     "commands are missing", [P + "transfer"]),
    ("a setting my other build tool reads from the package manager's user config file now prints an unknown config "
     "warning: where should it go instead", [NF + "npmrc"]),
    ("put up a warning for everyone who installs an old, buggy release of my package without deleting it",
     [NC + "npm-deprecate"]),
    ("every rebuild of my Containerfile runs all the steps again: reuse what earlier builds produced",
     [B + "buildah-build.1"]),
    ("processes started during a build have no network: where does the tool look for the network plugin setup, and "
     "where must the plugins be installed", [B + "examples/cni-examples/README"]),
    ("does the package manager send the registry anything about me or my machine, for example whether it runs in CI",
     [NU + "registry"]),
    ("make sure our internal package can never be published to the public registry by mistake",
     [NU + "registry", NF + "package-json"]),
    ("building a Python package fails because it needs a library that is installed on my system but not in the "
     "isolated environment the installer builds it in", [PIP + "reference/build-system/pyproject-toml"]),
    ("start containers before the whole image has downloaded, fetching the layers' contents only when they are read",
     [C + "remote-snapshotter"]),
]

# Added on 2026-12-06, after every default was chosen, to check the defaults on a corpus nobody here had seen (issue
# 13's kind: ~300 technical reference pages, man-page style): both splits are unseen and nothing is ever tuned on
# them. Written blind, from the rendered pages alone (read with man and grep), before and without any search,
# retrieval, bench or embedding on the corpus; as a sysadmin asks: the task or symptom, never the option's or
# command's name. Pairs (dev, then test) of one kind, the kinds in turn, so that both splits hold each kind: a task
# on one page; two facts from one page; a single setting deep inside a long page (apt.conf, systemd.unit, ext4,
# mount, ip-link, iptables-extensions); "why" questions; and answers that need two pages (both labelled). A few
# labels are alternatives (a package held either way; Containerfile or Dockerfile). No page answers more than two.
ADMIN: list[Question] = [
    # a task, one page
    ("keep one package at the version I have now while I upgrade everything else",
     ["apt-mark.8", "apt_preferences.5"]),
    ("make the programs on this machine trust our company's internal certificate authority",
     ["update-ca-certificates.8"]),
    # two facts from one page
    ("run a cleanup job every day at 3 in the morning, and if the machine was off at that time, run it as soon as "
     "it is back up", ["systemd.timer.5"]),
    ("keep a service at a fifth of one CPU and never let it use more than 1 GB of memory",
     ["systemd.resource-control.5"]),
    # deep inside a long page
    ("run a command of my own, such as taking a file system snapshot, every time before the package manager "
     "changes anything on the system", ["apt.conf.5"]),
    ("change one setting of a service that a package ships, without editing its file, so that upgrades keep my "
     "change", ["systemd.unit.5"]),
    # why
    ("updating the package lists refuses to use one repository because its release file is not signed: why, and "
     "can I accept it for that repository alone", ["apt-secure.8"]),
    ("I set a 90-day maximum password age in the system-wide login defaults file, but the passwords of existing "
     "users still never expire: why", ["login.defs.5"]),
    # two pages
    ("restart my service automatically whenever it crashes, but give up if it crashed five times within a minute",
     ["systemd.service.5", "systemd.unit.5"]),
    ("write the current firewall rules to a file and load them back from that file later",
     ["iptables-save.8", "iptables-restore.8"]),
    # a task, one page
    ("let a web server binary listen on port 80 without running it as root", ["setcap.8"]),
    ("which programs are confined by security profiles right now, and which of those profiles only log violations "
     "instead of blocking them", ["aa-status.8"]),
    # two facts from one page
    ("run the test suite before every commit and refuse the commit when it fails; and how do I skip that check "
     "once", ["githooks.5"]),
    ("schedule a reboot 15 minutes from now with a message to the logged-in users, then call it off",
     ["shutdown.8"]),
    # deep inside a long page
    ("the root file system should journal file contents too, not only metadata: where does that setting have to "
     "go", ["ext4.5"]),
    ("list the inodes of files deleted during the last hour on an unmounted ext4 partition", ["debugfs.8"]),
    # why
    ("I ignore a whole folder in my repository but want one file inside it tracked, and my exception line has no "
     "effect: why", ["gitignore.5"]),
    ("my daemon puts itself into the background when it starts, and the service manager then thinks it died and "
     "cleans up: what is wrong in my unit", ["systemd.service.5"]),
    # two pages
    ("freeze a running container to disk and start it again later from where it stopped",
     ["runc-checkpoint.8", "runc-restore.8"]),
    ("copy the system time into the battery-backed hardware clock, and where is it recorded whether that clock "
     "keeps UTC or local time", ["hwclock.8", "adjtime_config.5"]),
    # a task, one page
    ("a file system will not detach because something still uses it: take it out of the tree now and let the "
     "clean-up happen once it is no longer busy", ["umount.8"]),
    ("check an old hard disk for unreadable sectors without destroying the data on it", ["badblocks.8"]),
    # two facts from one page
    ("create a message broker user with administrator rights and give it full permissions on one virtual host",
     ["rabbitmqctl.8"]),
    ("which registries are tried for an image name that has no registry part, and how do I send pulls of Docker "
     "Hub images to a local mirror instead", ["containers-registries.conf.5"]),
    # deep inside a long page
    ("create a tagged VLAN interface with ID 100 on top of my ethernet card", ["ip-link.8"]),
    ("accept incoming packets that belong to connections this machine already has open", ["iptables-extensions.8"]),
    # why
    ("the system log messages from before the last reboot are gone: why, and how do I keep them",
     ["journald.conf.5"]),
    ("I gave my network card a fixed name, matched on its MAC address, but it still comes up with its predictable "
     "name: why", ["systemd.link.5"]),
    # two pages
    ("traffic from my second uplink's address must leave through that uplink's gateway: a separate routing table "
     "and a rule that picks it", ["ip-rule.8", "ip-route.8"]),
    ("let a normal user run containers without root: give them ranges of extra user and group IDs",
     ["subuid.5", "subgid.5"]),
    # a task, one page
    ("I enlarged the partition: make the ext4 file system on it use the new space while it stays mounted",
     ["resize2fs.8"]),
    ("measure how fragmented the files on a mounted ext4 disk are before deciding to defragment it",
     ["e4defrag.8"]),
    # two facts from one page
    ("mount a disk at boot by its UUID, and do not let the boot fail when that disk is unplugged", ["fstab.5"]),
    ("short host names get our company's domain appended when they are looked up: where is that set, and how do I "
     "give up on a dead name server sooner", ["resolv.conf.5"]),
    # deep inside a long page
    ("allow only a few new SSH connections per minute from each source address, and drop the rest",
     ["iptables-extensions.8"]),
    ("make a folder also appear at a second place in the file tree", ["mount.8"]),
    # why
    ("my setuid program ignores the library search path I set in the environment: why",
     ["ld.so.8"]),
    ("my MQTT broker, started without any configuration, only accepts clients from the machine itself: why, and "
     "how do I let other machines connect", ["mosquitto.conf.5"]),
    # two pages
    ("make the PostgreSQL client tools connect to one particular version's cluster by default, for me alone and "
     "for everybody", ["postgresqlrc.5", "user_clusters.5"]),
    ("lock an account after 5 failed logins within 10 minutes, and keep it locked until an administrator clears it",
     ["faillock.conf.5", "pam_faillock.8"]),
    # a task, one page
    ("which gateway, interface and source address would the kernel use to reach a given host",
     ["ip-route.8"]),
    ("show the hardware addresses the software switch has learned, and on which of its ports each one was seen",
     ["bridge.8"]),
    # two facts from one page
    ("from an init script, start a daemon in the background under an unprivileged account, and succeed quietly "
     "if it is already running", ["start-stop-daemon.8"]),
    ("list the firewall rules with their packet counters and positions, then delete one rule by its position",
     ["iptables.8"]),
    # deep inside a long page
    ("raise the default limit on open files for every service at once, instead of in each unit",
     ["systemd-system.conf.5"]),
    ("reach a server that can only be reached through a bastion host, set up once in my client configuration",
     ["ssh_config.5"]),
    # why
    ("nobody can log in to the password-protected share of my rsync server, although the user names and "
     "passwords in its file are right", ["rsyncd.conf.5"]),
    ("after the nightly rotation my application keeps writing into the renamed old log file instead of the new "
     "one", ["logrotate.8"]),
    # two pages
    ("give every user a private /tmp directory of their own when they log in",
     ["namespace.conf.5", "pam_namespace.8"]),
    ("grow the root partition to fill the whole disk on first boot, with the partition layout declared in "
     "configuration files", ["systemd-repart.8", "repart.d.5"]),
    # a task, one page
    ("turn my existing packet filter rules into the syntax of the newer nftables framework",
     ["xtables-translate.8"]),
    ("try new firewall rules on a remote server so that they are undone by themselves if I lock myself out",
     ["iptables-apply.8"]),
    # two facts from one page
    ("let other users see the files of a FUSE file system I mounted as a normal user: what must the administrator "
     "allow first", ["mount.fuse3.8"]),
    ("which relationship field do I use when my package's install script needs another package fully set up "
     "before my package is even unpacked, and how does that differ from merely suggesting one", ["deb-control.5"]),
    # deep inside a long page
    ("cap how large each container's log file may grow, for every container on this machine",
     ["containers.conf.5"]),
    ("my shell scripts get Windows line endings when the repository is checked out on Windows and then fail to "
     "run: keep them with Unix line endings", ["gitattributes.5"]),
    # why
    ("accounts that were locked after too many failed logins can log in again after a reboot: why, and how do I "
     "make the lock survive", ["faillock.conf.5"]),
    ("my init script works when I run it directly but fails when started through the usual wrapper command, "
     "because variables it relies on are missing: why", ["service.8"]),
    # a task, one page
    ("list the network sockets together with the process ID and name of the program that owns each",
     ["netstat.8"]),
    ("install a minimal Debian system into a directory so that I can chroot into it", ["debootstrap.8"]),
    ("remove a user's account, but first save all of their files into a compressed archive", ["deluser.8"]),
    ("a user is locked out after typing a wrong password too many times: let them in again", ["faillock.8"]),
    ("serve the current folder over HTTP with directory listings, with a single command and no configuration file",
     ["caddy-file-server.8"]),
    ("put HTTPS in front of an app listening on localhost port 8080, with one command", ["caddy-reverse-proxy.8"]),
    ("announce my web server on the local network so that other machines discover it by themselves",
     ["avahi.service.5"]),
    ("the manual viewer does not find the pages I installed under /opt/tool/man", ["manpath.5"]),
    ("teach the file type detection tool to recognise my own binary format from its first bytes", ["magic.5"]),
    ("a scratch file system kept in memory that may not grow beyond 512 MB", ["tmpfs.5"]),
    ("find out from a shell script which distribution, and which release of it, this machine runs",
     ["os-release.5"]),
    ("synchronise the clock with our company's time servers instead of the default pool", ["timesyncd.conf.5"]),
    ("keep an old-style init script from starting at boot without uninstalling it", ["update-rc.d.8"]),
    ("list the accounts that nobody has logged into for the last 90 days", ["lastlog.8"]),
    ("raise the memory limit of a container that is already running, with the low-level container runtime",
     ["runc-update.8"]),
    ("keep containers running while the Docker daemon itself is restarted or upgraded", ["dockerd.8"]),
    ("keep the .git folder and build outputs out of what is sent to the image build", ["containerignore.5"]),
    ("let one user open more files at once, from their next login on", ["limits.conf.5"]),
    ("let the members of one group administer user accounts without being asked for an administrator password, "
     "while everyone else keeps the usual rule", ["polkit.8"]),
    ("my uploads make everything laggy: shape outgoing traffic just below my line's upload speed to cut the "
     "latency", ["tc-cake.8"]),
    ("command-line LDAP tools must check the server's certificate against our own CA file", ["ldap.conf.5"]),
    ("which hashing method produced a password hash that begins with $y$, and is it a good choice for new "
     "passwords", ["crypt.5"]),
    ("with TCP wrappers, allow the SSH daemon only from our office subnet and refuse everyone else",
     ["hosts_access.5"]),
    ("look up host names in the local hosts file before asking DNS", ["nsswitch.conf.5"]),
    ("make a kernel parameter I changed at runtime survive a reboot", ["sysctl.conf.5"]),
    ("list the packages that depend on a given library", ["apt-cache.8"]),
    ("my container tools find registry credentials that I never typed into them: which files do they read, and "
     "in what order", ["containers-auth.json.5"]),
    ("give one particular user the right to open raw network sockets when they log in, without making the "
     "program setuid", ["capability.conf.5"]),
    ("format a partition that will hold millions of tiny files so that it does not run out of inodes",
     ["mke2fs.8", "mke2fs.conf.5"]),
    ("what is the difference between the instruction that sets a container image's fixed program and the one that "
     "only gives it default arguments", ["Containerfile.5", "Dockerfile.5"]),
]

SETS: dict[str, list[Question]] = {"pydoc": PYDOC, "man": MAN, "code": CODE, "info": INFO, "html": HTML, "md": MD,
                                   "admin": ADMIN}


def split(questions: list[Question], part: str) -> list[Question]:
    """``dev`` (even positions), ``test`` (odd positions) or ``all``."""
    if part == "all":
        return questions
    return questions[0 if part == "dev" else 1::2]
